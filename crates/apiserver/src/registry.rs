//! The object lifecycle over the store: how a create, update, patch or delete of any kind turns into
//! conditional writes, with upstream's metadata rules (uid, creationTimestamp, generation, resourceVersion),
//! the spec/status split, finalizers and graceful deletion. HTTP-agnostic: handlers and in-process
//! controllers both call it.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`; the store's modification revision is
//! injected on every read, so the resourceVersion clients see is always the store's truth.

use std::sync::Arc;

use berth_api::{meta, ApiError, Cause, ResourceInfo};
use berth_store::{KeyValue, Revision, Store, StoreError};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Value};

use crate::allocator::Allocator;
use crate::error::{Error, Result};
use crate::strategy;
use crate::target::{collection_prefix, object_key};

/// How many times a read-modify-write is retried when another writer got in between.
const MAX_CONFLICT_RETRIES: usize = 16;

/// The largest object, as the JSON berth stores, that any write may leave behind: etcd's default request limit
/// (`--max-request-bytes`, 1.5 MiB), which is what bounds every object upstream. It is checked on the final
/// object, after patching, defaulting and the status split, on every write path, so no sequence of small requests
/// can build a bigger one. A ConfigMap or Secret holding the full 1 MiB of data it may hold still fits.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// `fieldValidation`: what to do with fields the kind's schema does not have.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the write with 400 (`strict decoding error: unknown field "…"`); kubectl's `--validate=strict`.
    Strict,
    /// Drop them and tell the client in a `Warning` header; upstream's default when the parameter is absent.
    #[default]
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter: `Strict`, `Warn` or `Ignore`; absent means `Warn`. Anything else is refused,
    /// with upstream's message.
    pub fn parse(value: Option<&str>) -> Result<FieldValidation> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation directive {other:?} is not a valid option; valid options are Ignore, Warn, or Strict"
            ))
            .into()),
        }
    }
}

/// Options common to writes.
#[derive(Debug, Default, Clone)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and return the result without persisting.
    pub dry_run: bool,
    /// `fieldValidation`: unknown fields are refused, or dropped with or without a warning. They are never stored.
    pub field_validation: FieldValidation,
}

/// A successful write: the object as stored, and the warnings owed to the client (`Warning: 299` headers).
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, under `dryRun`), with its resourceVersion.
    pub object: Value,
    /// Human-readable warnings, such as `unknown field "spec.foo"` for a field that was dropped.
    pub warnings: Vec<String>,
}

/// Options of a delete (from `DeleteOptions` and query parameters).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun`.
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object is marked for deletion (finalizers or graceful termination pending); this is its new state.
    Pending(Value),
}

/// Generic, kind-aware access to objects in the store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    allocator: Allocator,
}

/// Formats a timestamp the way Kubernetes serialises `metav1.Time`: RFC 3339, seconds, UTC.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Decodes a stored object and injects its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    meta::metadata_mut(&mut v).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(v)
}

/// Encodes an object for the store, refusing one over [`MAX_OBJECT_BYTES`] with 413.
fn encode(r: &ResourceInfo, obj: &Value) -> Result<Bytes> {
    let mut obj = obj.clone();
    meta::metadata_mut(&mut obj).remove("resourceVersion");
    let mut bytes = serde_json::to_vec(&obj).map_err(|e| Error(ApiError::internal(e)))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        // Upstream, etcd refuses such a write with "etcdserver: request is too large" and the apiserver passes
        // it on as a 500 (kubernetes#112152); it is the client's doing, so berth answers 413 and says why.
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: the {} {:?} would be stored as {} bytes, and an object may have at most \
                 {MAX_OBJECT_BYTES}",
                r.kind,
                meta::name(&obj),
                bytes.len()
            ),
        )
        .into());
    }
    // serde_json grows its buffer by doubling; the store keeps this allocation for as long as the value and its
    // history live, so give back the slack rather than pay up to twice the object's size in memory.
    bytes.shrink_to_fit();
    Ok(Bytes::from(bytes))
}

/// Parses a client-supplied resourceVersion (a decimal store revision); anything else is a 400.
pub fn parse_rv(rv: &str) -> Result<Revision> {
    rv.parse::<u64>()
        .map(Revision)
        .map_err(|_| Error(ApiError::bad_request(format!("invalid resource version: {rv:?}"))))
}

/// A random suffix for `generateName`, from upstream's alphabet (no vowels, no confusable characters).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>, allocator: Allocator) -> Self {
        Registry { store, allocator }
    }

    /// The underlying store (for watches).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reads one object.
    pub async fn get(&self, r: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        match self.store.get(&object_key(r, ns, name)).await? {
            Some(kv) => decode(&kv),
            None => Err(ApiError::not_found(r, name).into()),
        }
    }

    /// Lists a collection (one namespace, or all when `ns` is None) at the current revision.
    pub async fn list(&self, r: &'static ResourceInfo, ns: Option<&str>) -> Result<(Vec<Value>, Revision)> {
        let (kvs, rev) = self.store.list(&collection_prefix(r, ns), None).await?;
        let items = kvs.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok((items, rev))
    }

    /// Checks that a namespaced object may be created in `ns`: the namespace exists and is not terminating.
    async fn check_namespace(&self, r: &'static ResourceInfo, ns: &str, name: &str) -> Result<()> {
        let ns_info = berth_api::resources::by_plural("", "v1", "namespaces").ok_or_else(ApiError::path_not_found)?;
        match self.store.get(&object_key(ns_info, None, ns)).await? {
            None => Err(ApiError::namespace_not_found(ns).into()),
            Some(kv) => {
                let nsobj = decode(&kv)?;
                if nsobj.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some() {
                    return Err(ApiError::forbidden(
                        r,
                        name,
                        &format!("unable to create new content in namespace {ns} because it is being terminated"),
                    )
                    .into());
                }
                Ok(())
            }
        }
    }

    /// Creates an object. `obj` is the decoded request body; `ns` the namespace from the URL.
    pub async fn create(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        check_type(r, &obj)?;
        let warnings = prune_unknown(r, &mut obj, opts.field_validation, None)?;
        set_type(r, &mut obj);
        let ns = if r.namespaced() { ns } else { None };
        set_namespace(r, ns, &mut obj)?;
        let generate = meta::str_field(&obj, "generateName").map(str::to_string);
        let given_name = meta::name(&obj).to_string();
        if given_name.is_empty() && generate.is_none() {
            return Err(ApiError::invalid(
                r,
                "",
                vec![cause(
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                    "metadata.name",
                )],
            )
            .into());
        }
        {
            let m = meta::metadata_mut(&mut obj);
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "generation",
                "managedFields",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if strategy::tracks_generation(r) {
                m.insert("generation".into(), json!(1));
            }
        }
        strategy::prepare_create(r, &mut obj);
        if let Some(status) = strategy::initial_status(r, &obj) {
            obj["status"] = status;
        }
        berth_api::defaults::apply(r.kind, &mut obj);
        if let Some(ns) = ns {
            self.check_namespace(r, ns, &given_name).await?;
        }

        let attempts = if given_name.is_empty() { 8 } else { 1 };
        for attempt in 0..attempts {
            if given_name.is_empty() {
                let name = format!("{}{}", generate.as_deref().unwrap_or(""), random_suffix());
                meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
            }
            let name = meta::name(&obj).to_string();
            validate(r, &obj, None)?;
            let key = object_key(r, ns, &name);
            if opts.dry_run {
                // The size check still applies: a dry run answers what the real write would.
                encode(r, &obj)?;
                return Ok(Written { object: obj, warnings });
            }
            let allocated = self.allocator.allocate(r, &key, &mut obj, None).await?;
            let bytes = match encode(r, &obj) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.allocator.release_new(&allocated).await;
                    return Err(e);
                }
            };
            match self.store.create(&key, bytes).await {
                Ok(kv) => {
                    return Ok(Written {
                        object: decode(&kv)?,
                        warnings,
                    })
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    self.allocator.release_new(&allocated).await;
                    if attempt + 1 == attempts {
                        return Err(ApiError::already_exists(r, &name).into());
                    }
                }
                Err(e) => {
                    self.allocator.release_new(&allocated).await;
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::internal("generateName retries exhausted").into())
    }

    /// Replaces an object (PUT). With `subresource = Some("status")` only the status is taken from `new`.
    pub async fn update(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written> {
        check_type(r, &new)?;
        // Decoded and pruned here, before the store is read, so a body that does not decode is a 400 even for a
        // missing object, as upstream decodes before it reads; the loop below then finds nothing left to prune.
        let warnings = prune_unknown(r, &mut new, opts.field_validation, None)?;
        set_type(r, &mut new);
        let ns = if r.namespaced() { ns } else { None };
        set_namespace(r, ns, &mut new)?;
        match meta::str_field(&new, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                ))
                .into())
            }
            _ => {}
        }
        let precondition = match meta::str_field(&new, "resourceVersion") {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let written = self
            .write_loop(r, ns, name, precondition, opts, |_old| Ok(new.clone()), subresource)
            .await?;
        Ok(Written {
            object: written.object,
            warnings,
        })
    }

    /// Read-modify-write with retries on conflicting writers: `f` maps the current object to the desired one.
    /// Used by PATCH and by in-process callers. A `precondition` revision makes a stale read a 409 instead of
    /// a retry.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_loop(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        precondition: Option<Revision>,
        opts: &WriteOptions,
        mut f: impl FnMut(&Value) -> Result<Value>,
        subresource: Option<&str>,
    ) -> Result<Written> {
        let key = object_key(r, ns, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(r, name).into());
            };
            if precondition.is_some_and(|p| p != kv.mod_revision) {
                return Err(ApiError::conflict(r, name).into());
            }
            let old = decode(&kv)?;
            let mut desired = f(&old)?;
            check_type(r, &desired)?;
            let warnings = prune_unknown(r, &mut desired, opts.field_validation, Some(&old))?;
            set_type(r, &mut desired);
            if meta::name(&desired) != name && !meta::name(&desired).is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&desired)
                ))
                .into());
            }
            let next = prepare_update(r, &old, desired, subresource);
            let mut next = match next {
                Some(n) => n,
                None => return Ok(Written { object: old, warnings }),
            };
            self.allocator.keep_allocated(r, &old, &mut next);
            check_no_new_finalizers(r, &old, &next)?;
            validate(r, &next, Some(&old))?;
            let bytes = encode(r, &next)?;
            if opts.dry_run {
                return Ok(Written { object: next, warnings });
            }
            // A deleting object whose last finalizer was just removed is deleted (upstream's
            // "shouldDeleteDuringUpdate").
            if can_finish_deletion(r, &next) {
                return match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(kv) => {
                        self.allocator.release(r, &old).await;
                        let mut last = next;
                        meta::metadata_mut(&mut last)
                            .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                        Ok(Written { object: last, warnings })
                    }
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) if precondition.is_none() => {
                        continue
                    }
                    Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(r, name).into()),
                    Err(e) => Err(e.into()),
                };
            }
            // The size was checked before allocating, so an oversized Service never claims addresses. Only a
            // Service's allocation changes the object, so only a Service is encoded again.
            self.allocator.allocate(r, &key, &mut next, Some(&old)).await?;
            let bytes = if r.kind == "Service" { encode(r, &next)? } else { bytes };
            match self.store.update(&key, bytes, Some(kv.mod_revision)).await {
                Ok(kv) => {
                    return Ok(Written {
                        object: decode(&kv)?,
                        warnings,
                    })
                }
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                Err(StoreError::Conflict { .. }) => return Err(ApiError::conflict(r, name).into()),
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name).into()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(r, name).into())
    }

    /// Deletes an object, honouring preconditions, finalizers and graceful deletion.
    pub async fn delete(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let key = object_key(r, ns, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(r, name).into());
            };
            let old = decode(&kv)?;
            if let Some(uid) = &opts.uid {
                if meta::str_field(&old, "uid") != Some(uid.as_str()) {
                    return Err(ApiError::conflict_because(
                        r,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta::str_field(&old, "uid").unwrap_or("")
                        ),
                    )
                    .into());
                }
            }
            if let Some(rv) = &opts.resource_version {
                if parse_rv(rv)? != kv.mod_revision {
                    return Err(ApiError::conflict_because(
                        r,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            kv.mod_revision
                        ),
                    )
                    .into());
                }
            }

            // Graceful deletion: mark and let the owner of the object's effects (the node agent) finish it.
            let grace = strategy::graceful_period(r, &old, opts.grace_period);
            let mut marked = old.clone();
            let mut pending = false;
            if let Some(g) = grace.filter(|g| *g > 0) {
                let current = if is_deleting(&old) {
                    Some(grace_seconds(&old))
                } else {
                    None
                };
                if current.is_none_or(|c| g < c) {
                    let when = strategy::deletion_deadline(Utc::now(), g);
                    let m = meta::metadata_mut(&mut marked);
                    m.insert("deletionTimestamp".into(), json!(when));
                    m.insert("deletionGracePeriodSeconds".into(), json!(g));
                }
                pending = true;
            } else if is_deleting(&old) && grace == Some(0) {
                meta::metadata_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            if !finalizers(&old).is_empty() {
                if !is_deleting(&marked) {
                    let m = meta::metadata_mut(&mut marked);
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                pending = true;
            }
            if strategy::mark_deleting(r, &mut marked) {
                if !is_deleting(&marked) {
                    let m = meta::metadata_mut(&mut marked);
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                if strategy::waits_on_spec_finalizers(r, &marked) {
                    pending = true;
                }
            }
            if pending {
                if opts.dry_run || marked == old {
                    return Ok(Deleted::Pending(marked));
                }
                match self
                    .store
                    .update(&key, encode(r, &marked)?, Some(kv.mod_revision))
                    .await
                {
                    Ok(kv) => return Ok(Deleted::Pending(decode(&kv)?)),
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Gone(old));
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(kv) => {
                    self.allocator.release(r, &old).await;
                    let mut last = old;
                    meta::metadata_mut(&mut last).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    return Ok(Deleted::Gone(last));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name).into()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(r, name).into())
    }
}

fn cause(reason: &str, message: &str, field: &str) -> Cause {
    Cause {
        reason: reason.into(),
        message: message.into(),
        field: field.into(),
    }
}

/// The body's apiVersion/kind, when given, must be the endpoint's.
fn check_type(r: &ResourceInfo, obj: &Value) -> Result<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object").into());
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != r.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                r.kind
            ))
            .into());
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if !av.is_empty() && av != r.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                r.api_version()
            ))
            .into());
        }
    }
    if obj.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::bad_request("metadata must be an object").into());
    }
    Ok(())
}

fn set_type(r: &ResourceInfo, obj: &mut Value) {
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
}

fn set_namespace(r: &ResourceInfo, ns: Option<&str>, obj: &mut Value) -> Result<()> {
    let m = meta::metadata_mut(obj);
    if !r.namespaced() {
        m.remove("namespace");
        return Ok(());
    }
    if let Some(ns) = ns {
        match m.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
                .into())
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    }
    Ok(())
}

/// Upstream's decoding of a write body, on the JSON berth stores. A body that does not decode into the kind's Go
/// type (a string where a number belongs, bad base64 in a Secret, an unparsable quantity) is a 400 before any
/// validation. Fields the kind's schema does not have are refused under `Strict`, and otherwise dropped, as Go's
/// decoder drops them: nothing outside the schema, where no validation looks, is ever stored. Returns the
/// warnings owed under `Warn`.
///
/// `old` is the stored object a patch or update started from: fields it already held (stored by an older berth
/// that kept unknown fields) are dropped without a word, so that they neither fail a strict patch that never
/// mentioned them nor warn about them on every write.
fn prune_unknown(
    r: &ResourceInfo,
    obj: &mut Value,
    validation: FieldValidation,
    old: Option<&Value>,
) -> Result<Vec<String>> {
    let mut unknown = berth_api::validation::prune_unknown_fields(r.kind, obj).map_err(ApiError::bad_request)?;
    if unknown.is_empty() {
        return Ok(unknown);
    }
    if let Some(old) = old {
        let already = berth_api::validation::strict_unknown_fields(r.kind, old).unwrap_or_default();
        unknown.retain(|f| !already.contains(f));
    }
    let unknown: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match validation {
        FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            r.kind,
            r.version,
            r.kind,
            unknown.join(", ")
        ))
        .into()),
        FieldValidation::Strict | FieldValidation::Ignore => Ok(Vec::new()),
        FieldValidation::Warn => Ok(unknown),
    }
}

fn validate(r: &'static ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<()> {
    let causes = berth_api::validation::validate(r.kind, obj, old);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r, meta::name(obj), causes).into())
    }
}

fn is_deleting(obj: &Value) -> bool {
    meta::str_field(obj, "deletionTimestamp").is_some()
}

/// Once an object is being deleted its finalizers may only be removed, never added (upstream's
/// `ValidateObjectMetaUpdate`): otherwise a deletion could be postponed forever.
fn check_no_new_finalizers(r: &'static ResourceInfo, old: &Value, next: &Value) -> Result<()> {
    if !is_deleting(old) {
        return Ok(());
    }
    let before = finalizers(old);
    let added: Vec<String> = finalizers(next).into_iter().filter(|f| !before.contains(f)).collect();
    if added.is_empty() {
        return Ok(());
    }
    let list = added.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
    Err(ApiError::invalid(
        r,
        meta::name(old),
        vec![cause(
            "FieldValueForbidden",
            &format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"),
            "metadata.finalizers",
        )],
    )
    .into())
}

/// Whether a deleting object has nothing left to wait for: no finalizers, no grace period (pods) and no
/// kind-specific finalizer (a namespace's `spec.finalizers`).
fn can_finish_deletion(r: &ResourceInfo, obj: &Value) -> bool {
    is_deleting(obj)
        && finalizers(obj).is_empty()
        && grace_seconds(obj) == 0
        && !strategy::waits_on_spec_finalizers(r, obj)
}

fn grace_seconds(obj: &Value) -> i64 {
    obj.get("metadata")
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Builds the object to store from the current one and the desired one, or `None` when nothing would change.
/// Server-owned metadata is kept from `old`; on the main endpoint the status is kept from `old`, on `/status`
/// everything but the status is (upstream's status strategy, including `ResetObjectMetaForStatus`).
fn prepare_update(r: &'static ResourceInfo, old: &Value, desired: Value, sub: Option<&str>) -> Option<Value> {
    let mut next = if sub == Some("status") {
        let mut n = old.clone();
        match desired.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(o) = n.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        n
    } else {
        let mut n = desired;
        if r.has_status {
            match old.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(o) = n.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        n
    };
    {
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let m = meta::metadata_mut(&mut next);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        m.remove("resourceVersion");
        m.remove("selfLink");
        m.remove("managedFields");
    }
    if sub != Some("status") {
        berth_api::defaults::apply(r.kind, &mut next);
    }
    if strategy::tracks_generation(r) && strategy::generation_source(r, &next) != strategy::generation_source(r, old) {
        let gen = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(&mut next).insert("generation".into(), json!(gen + 1));
    }
    let mut old_cmp = old.clone();
    meta::metadata_mut(&mut old_cmp).remove("resourceVersion");
    if next == old_cmp {
        None
    } else {
        Some(next)
    }
}
