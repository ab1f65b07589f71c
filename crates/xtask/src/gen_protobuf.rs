//! Generates berth-protobuf's schema table (`crates/protobuf/src/schema_generated.rs`) from two upstream-derived
//! crates already in the workspace: k8s-pb (kube-rs's prost codegen of upstream's `generated.proto` files: field tags,
//! wire types, repeated/map shapes and message references) and k8s-openapi (upstream's OpenAPI definitions: the real
//! JSON field names such as `hostIPC` or `podIPs`, which a naive camelCase of prost's snake_case names gets wrong).
//! It does not decode anything and knows nothing about JSON conversion rules beyond naming: the walker in
//! berth-protobuf owns those.
//!
//! How fields are named and flattened:
//! * A k8s-pb field is matched to the OpenAPI definition of the same message by comparing names lower-cased with
//!   everything but letters and digits removed (`host_ipc` ~ `hostIPC`). Messages are matched the same way
//!   (prost renames `AWSElasticBlockStoreVolumeSource` to `AwsElasticBlockStoreVolumeSource`).
//! * Go's `json:",inline"` embeds (`Volume.VolumeSource`, `Probe.ProbeHandler`, ...) have no OpenAPI definition of
//!   their own: OpenAPI lists their fields on the parent. So a singular message field with no JSON name whose message
//!   has no OpenAPI definition is an inline embed, and its message's fields are named from the parent's definition.
//! * Anything else that cannot be named, and any JSON field of a definition that no protobuf field supplies, is an
//!   error: the generator refuses to guess rather than silently drop fields.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// The k8s-openapi version module matching the workspace's `v1_35` feature (kubectl 1.35).
const OPENAPI_VERSION_DIR: &str = "v1_35";

/// Packages (k8s-pb module paths) whose resource kinds berth decodes; every message they reach is in the table.
const ROOT_PACKAGES: &[&str] = &[
    "api.core.v1",
    "api.apps.v1",
    "api.autoscaling.v1",
    "api.autoscaling.v2",
    "api.policy.v1",
    "api.discovery.v1",
    "api.coordination.v1",
    "api.batch.v1",
];

/// Kinds sent as request bodies that are not resources of their own (k8s-pb gives them no `Resource` impl):
/// (apiVersion, kind, k8s-pb message). DeleteOptions is registered in every group version upstream; the decoder
/// accepts it under any apiVersion.
const EXTRA_KINDS: &[(&str, &str, &str)] = &[
    ("autoscaling/v1", "Scale", "api.autoscaling.v1.Scale"),
    ("policy/v1", "Eviction", "api.policy.v1.Eviction"),
    (
        "meta.k8s.io/v1",
        "DeleteOptions",
        "apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ),
];

/// Messages whose JSON form is not an object of their fields (Time → RFC3339 string, ...). The walker converts
/// them by name; their fields keep their proto names here, for reference only.
const SPECIAL_MESSAGES: &[&str] = &[
    "apimachinery.pkg.apis.meta.v1.Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1",
    "apimachinery.pkg.util.intstr.IntOrString",
    "apimachinery.pkg.api.resource.Quantity",
    "apimachinery.pkg.runtime.RawExtension",
];

/// Where the generated table lives in the tree.
pub fn output_path() -> PathBuf {
    workspace_root().join("crates/protobuf/src/schema_generated.rs")
}

/// Produces the full text of `schema_generated.rs`.
pub fn generate() -> Result<String> {
    let deps = locate_dependencies()?;
    let pb = parse_k8s_pb(&deps.k8s_pb.dir.join("src"))?;
    let openapi = parse_k8s_openapi(&deps.k8s_openapi.dir.join("src").join(OPENAPI_VERSION_DIR))?;
    let schema = build_schema(&pb, &openapi)?;
    Ok(render(&schema, &deps))
}

fn workspace_root() -> PathBuf {
    // crates/xtask → the workspace root two levels up.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).to_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Locating k8s-pb and k8s-openapi sources through `cargo metadata` (the exact versions the lockfile resolved).

struct Dependency {
    version: String,
    dir: PathBuf,
}

struct Dependencies {
    k8s_pb: Dependency,
    k8s_openapi: Dependency,
}

fn locate_dependencies() -> Result<Dependencies> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let find = |name: &str| -> Result<Dependency> {
        let packages = meta["packages"]
            .as_array()
            .ok_or_else(|| anyhow!("cargo metadata has no packages"))?;
        let mut found: Vec<&serde_json::Value> = packages.iter().filter(|p| p["name"] == name).collect();
        if found.len() != 1 {
            bail!(
                "expected exactly one {name} in the dependency graph, found {}",
                found.len()
            );
        }
        let p = found.remove(0);
        let manifest = p["manifest_path"]
            .as_str()
            .ok_or_else(|| anyhow!("{name} has no manifest_path"))?;
        let dir = Path::new(manifest)
            .parent()
            .ok_or_else(|| anyhow!("bad manifest path {manifest}"))?;
        Ok(Dependency {
            version: p["version"].as_str().unwrap_or("?").to_owned(),
            dir: dir.to_owned(),
        })
    };
    Ok(Dependencies {
        k8s_pb: find("k8s-pb")?,
        k8s_openapi: find("k8s-openapi")?,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// k8s-pb: messages, fields and Resource impls, read from the prost attributes with syn.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    Bool,
    Int32,
    Int64,
    Double,
    String,
    Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PbType {
    Scalar(Scalar),
    /// A message, by key (`<package>.<rust ident>`).
    Message(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Card {
    Single,
    Repeated,
    /// A map; the entry key's scalar type (the value type is the field's type).
    Map(Scalar),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PbField {
    rust_name: String,
    tag: u32,
    ty: PbType,
    card: Card,
}

#[derive(Clone, Debug)]
struct PbMessage {
    package: String,
    ident: String,
    fields: Vec<PbField>,
}

struct PbCrate {
    /// Messages by key (`<package>.<rust ident>`).
    messages: BTreeMap<String, PbMessage>,
    /// (apiVersion, kind, message key) for every `impl crate::Resource`.
    resources: Vec<(String, String, String)>,
}

fn parse_k8s_pb(src: &Path) -> Result<PbCrate> {
    let mut files = Vec::new();
    collect_files(src, &mut files)?;
    files.sort();
    let mut krate = PbCrate {
        messages: BTreeMap::new(),
        resources: Vec::new(),
    };
    for file in files {
        if file.file_name().and_then(|n| n.to_str()) != Some("mod.rs") {
            continue;
        }
        let rel = file
            .parent()
            .and_then(|d| d.strip_prefix(src).ok())
            .ok_or_else(|| anyhow!("bad path"))?;
        let module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        parse_pb_module(&module, &ast.items, &mut krate).with_context(|| format!("in {}", file.display()))?;
    }
    Ok(krate)
}

fn parse_pb_module(module: &[String], items: &[syn::Item], krate: &mut PbCrate) -> Result<()> {
    let package = module.join(".");
    for item in items {
        match item {
            syn::Item::Struct(s) => {
                let mut fields = Vec::new();
                for f in &s.fields {
                    let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else {
                        continue;
                    };
                    let name = f.ident.as_ref().ok_or_else(|| anyhow!("tuple field in {}", s.ident))?;
                    let rust_name = name.to_string().trim_start_matches("r#").to_owned();
                    let field = parse_prost_field(attr, &f.ty, module)
                        .with_context(|| format!("field {}.{}", s.ident, rust_name))?;
                    fields.push(PbField { rust_name, ..field });
                }
                if !fields.is_empty() {
                    let ident = s.ident.to_string();
                    let msg = PbMessage {
                        package: package.clone(),
                        ident: ident.clone(),
                        fields,
                    };
                    krate.messages.insert(format!("{package}.{ident}"), msg);
                }
            }
            syn::Item::Impl(imp) => {
                let is_resource = imp
                    .trait_
                    .as_ref()
                    .and_then(|(_, path, _)| path.segments.last())
                    .is_some_and(|s| s.ident == "Resource");
                let syn::Type::Path(self_ty) = imp.self_ty.as_ref() else {
                    continue;
                };
                if !is_resource {
                    continue;
                }
                let ident = self_ty
                    .path
                    .segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .unwrap_or_default();
                let mut api_version = None;
                let mut kind = None;
                for it in &imp.items {
                    if let syn::ImplItem::Const(c) = it {
                        if let syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(s), ..
                        }) = &c.expr
                        {
                            if c.ident == "API_VERSION" {
                                api_version = Some(s.value());
                            } else if c.ident == "KIND" {
                                kind = Some(s.value());
                            }
                        }
                    }
                }
                let (Some(api_version), Some(kind)) = (api_version, kind) else {
                    bail!("Resource impl for {ident} without API_VERSION/KIND literals");
                };
                krate.resources.push((api_version, kind, format!("{package}.{ident}")));
            }
            syn::Item::Mod(m) if m.content.is_some() => {
                // The k8s protos have no nested messages; a nested module would mean the layout changed.
                bail!("unexpected inline module {} in {package}", m.ident);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reads one `#[prost(...)]` attribute (`string, optional, tag = "1"`, `btree_map = "string, message", tag = "2"`,
/// `message, repeated, tag = "3"`, ...) plus the field's Rust type (for message references).
fn parse_prost_field(attr: &syn::Attribute, ty: &syn::Type, module: &[String]) -> Result<PbField> {
    let mut type_word: Option<String> = None;
    let mut map_spec: Option<String> = None;
    let mut repeated = false;
    let mut tag: Option<u32> = None;
    attr.parse_nested_meta(|meta| {
        let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let value = if meta.input.peek(syn::Token![=]) {
            Some(meta.value()?.parse::<syn::LitStr>()?.value())
        } else {
            None
        };
        match key.as_str() {
            "optional" | "required" | "boxed" | "packed" => {}
            "repeated" => repeated = true,
            "tag" => tag = value.and_then(|v| v.parse().ok()),
            "btree_map" | "hash_map" => map_spec = value,
            "bool" | "int32" | "int64" | "double" | "string" | "bytes" | "message" => type_word = Some(key),
            other => return Err(meta.error(format!("unsupported prost attribute item `{other}`"))),
        }
        Ok(())
    })?;
    let tag = tag.ok_or_else(|| anyhow!("no tag"))?;
    let message_type = || -> Result<PbType> { Ok(PbType::Message(resolve_message_path(ty, module)?)) };
    let (ty, card) = if let Some(spec) = map_spec {
        let (k, v) = spec.split_once(',').ok_or_else(|| anyhow!("bad map spec {spec}"))?;
        let key = scalar(k.trim())?.ok_or_else(|| anyhow!("message map key in {spec}"))?;
        let value = match scalar(v.trim())? {
            Some(s) => PbType::Scalar(s),
            None => message_type()?,
        };
        (value, Card::Map(key))
    } else {
        let word = type_word.ok_or_else(|| anyhow!("no type in prost attribute"))?;
        let value = match scalar(&word)? {
            Some(s) => PbType::Scalar(s),
            None => message_type()?,
        };
        (value, if repeated { Card::Repeated } else { Card::Single })
    };
    Ok(PbField {
        rust_name: String::new(),
        tag,
        ty,
        card,
    })
}

/// `Ok(None)` for `message`; an error for proto types the k8s protos do not use (so a change is noticed).
fn scalar(word: &str) -> Result<Option<Scalar>> {
    Ok(Some(match word {
        "bool" => Scalar::Bool,
        "int32" => Scalar::Int32,
        "int64" => Scalar::Int64,
        "double" => Scalar::Double,
        "string" => Scalar::String,
        "bytes" | "vec" => Scalar::Bytes,
        "message" => return Ok(None),
        other => bail!("unsupported proto type {other}"),
    }))
}

/// Finds the message type inside `Option<..>`, `Vec<..>`, `Box<..>` or `BTreeMap<_, ..>` and turns its Rust path
/// (`super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta`, `Container`) into a message key.
fn resolve_message_path(ty: &syn::Type, module: &[String]) -> Result<String> {
    let syn::Type::Path(tp) = ty else {
        bail!("message field with a non-path type")
    };
    let last = tp.path.segments.last().ok_or_else(|| anyhow!("empty type path"))?;
    if ["Option", "Vec", "Box", "BTreeMap", "HashMap"].contains(&last.ident.to_string().as_str()) {
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            bail!("{} without arguments", last.ident)
        };
        let inner = args
            .args
            .iter()
            .filter_map(|a| {
                if let syn::GenericArgument::Type(t) = a {
                    Some(t)
                } else {
                    None
                }
            })
            .last()
            .ok_or_else(|| anyhow!("{} without a type argument", last.ident))?;
        return resolve_message_path(inner, module);
    }
    let segments: Vec<String> = tp.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let mut path: Vec<String> = module.to_vec();
    let mut rest = segments.as_slice();
    if rest.first().is_some_and(|s| s == "crate") {
        path.clear();
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        path.pop().ok_or_else(|| anyhow!("`super` past the crate root"))?;
        rest = &rest[1..];
    }
    path.extend(rest.iter().cloned());
    Ok(path.join("."))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// k8s-openapi: JSON field names per OpenAPI definition, read from its generated serde field visitors
// (`"hostIPC" => Field::Key_host_ipc,`), which list exactly the JSON names the definition accepts.

struct OpenApi {
    /// Definition key without the `io.k8s.` prefix (`api.core.v1.Volume`) → JSON field names.
    definitions: BTreeMap<String, Vec<String>>,
}

fn parse_k8s_openapi(dir: &Path) -> Result<OpenApi> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut definitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let mut current: Option<String> = None;
        for line in text.lines() {
            if let Some(def) = line.strip_prefix("// Generated from definition ") {
                let key = def.trim().strip_prefix("io.k8s.").unwrap_or(def.trim()).to_owned();
                definitions.entry(key.clone()).or_default();
                current = Some(key);
                continue;
            }
            let Some((lhs, rhs)) = line.trim().split_once(" => Field::Key_") else {
                continue;
            };
            let (Some(json), Some(def)) = (lhs.strip_prefix('"').and_then(|l| l.strip_suffix('"')), &current) else {
                continue;
            };
            if !rhs.ends_with(',') {
                continue;
            }
            let names = definitions.entry(def.clone()).or_default();
            if !names.iter().any(|n| n == json) {
                names.push(json.to_owned());
            }
        }
    }
    if definitions.is_empty() {
        bail!("no OpenAPI definitions found under {}", dir.display());
    }
    Ok(OpenApi { definitions })
}

// ---------------------------------------------------------------------------------------------------------------
// Joining the two: the reachable message set, JSON names and inline embeds.

/// How a field appears in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Naming {
    Json(String),
    Inline,
}

struct SchemaMessage {
    /// Full proto name (`k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource`).
    name: String,
    fields: Vec<(PbField, Naming)>,
}

struct Schema {
    /// Sorted by full proto name; indices are the table's message ids.
    messages: Vec<SchemaMessage>,
    /// (apiVersion, kind, message index), sorted.
    kinds: Vec<(String, String, usize)>,
    /// Message key → index into `messages`.
    index: HashMap<String, usize>,
}

/// Lower-case with everything but letters and digits removed: the form in which proto and JSON names agree.
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn build_schema(pb: &PbCrate, openapi: &OpenApi) -> Result<Schema> {
    // Roots: every resource of the served packages plus the extra request-body kinds.
    let mut kinds: Vec<(String, String, String)> = pb
        .resources
        .iter()
        .filter(|(_, _, key)| {
            ROOT_PACKAGES
                .iter()
                .any(|p| key.rsplit_once('.').is_some_and(|(pkg, _)| pkg == *p))
        })
        .cloned()
        .collect();
    for (av, kind, key) in EXTRA_KINDS {
        kinds.push(((*av).to_owned(), (*kind).to_owned(), (*key).to_owned()));
    }
    for p in ROOT_PACKAGES {
        if !kinds.iter().any(|(_, _, key)| key.starts_with(&format!("{p}."))) {
            bail!("no resources found in root package {p}");
        }
    }

    // Reachable closure.
    let mut reachable: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<String> = kinds.iter().map(|(_, _, k)| k.clone()).collect();
    while let Some(key) = queue.pop_front() {
        if !reachable.insert(key.clone()) {
            continue;
        }
        let msg = pb
            .messages
            .get(&key)
            .ok_or_else(|| anyhow!("k8s-pb has no message {key}"))?;
        for f in &msg.fields {
            if let PbType::Message(m) = &f.ty {
                queue.push_back(m.clone());
            }
        }
    }

    // OpenAPI definitions matched case-insensitively (prost re-cases acronyms in message names).
    let defs_by_norm: HashMap<String, &String> = openapi
        .definitions
        .keys()
        .map(|k| (k.to_ascii_lowercase(), k))
        .collect();
    let def_of = |key: &str| -> Option<&String> { defs_by_norm.get(&key.to_ascii_lowercase()).copied() };
    let is_special = |key: &str| SPECIAL_MESSAGES.contains(&key);

    // Name every reachable message's fields. Inline embeds are named from the definition of the message embedding
    // them, so work through (message, definition to name it from) pairs.
    let mut named: BTreeMap<String, Vec<(PbField, Naming)>> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut work: VecDeque<(String, String)> = VecDeque::new();
    for key in &reachable {
        if is_special(key) {
            let msg = &pb.messages[key];
            let fields = msg
                .fields
                .iter()
                .map(|f| (f.clone(), Naming::Json(lower_camel(&f.rust_name))))
                .collect();
            named.insert(key.clone(), fields);
        } else if let Some(def) = def_of(key) {
            work.push_back((key.clone(), def.clone()));
        }
    }
    // JSON names each definition received from protobuf fields, to check nothing in the definition is missed.
    let mut covered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut done: BTreeSet<(String, String)> = BTreeSet::new();
    while let Some((key, def)) = work.pop_front() {
        if !done.insert((key.clone(), def.clone())) {
            continue;
        }
        let json_names = &openapi.definitions[&def];
        let by_norm: HashMap<String, &String> = json_names.iter().map(|n| (norm(n), n)).collect();
        if by_norm.len() != json_names.len() {
            errors.push(format!("{def} has JSON names that collide when normalised"));
        }
        let msg = &pb.messages[&key];
        let mut fields = Vec::new();
        for f in &msg.fields {
            if let Some(json) = by_norm.get(&norm(&f.rust_name)) {
                covered.entry(def.clone()).or_default().insert((*json).clone());
                fields.push((f.clone(), Naming::Json((*json).clone())));
                continue;
            }
            // Go's `json:",inline"`: the embedded struct's fields are the parent's (OpenAPI lists them there), e.g.
            // `Volume.VolumeSource` or `ConfigMapKeySelector.LocalObjectReference` (which also has a definition
            // of its own, used where it is not inlined). Name the embedded message from the parent's definition.
            match &f.ty {
                PbType::Message(inner) if f.card == Card::Single && !is_special(inner) => {
                    work.push_back((inner.clone(), def.clone()));
                    fields.push((f.clone(), Naming::Inline));
                }
                _ => errors.push(format!("{key}.{} has no JSON name in {def}", f.rust_name)),
            }
        }
        // A message named from several definitions (its own and those it is inlined into) must get the same names
        // from each, since the table holds one naming per message.
        match named.get(&key) {
            Some(previous) if *previous != fields => {
                errors.push(format!("{key} gets different JSON names from {def} than elsewhere"))
            }
            Some(_) => {}
            None => {
                named.insert(key, fields);
            }
        }
    }
    for key in &reachable {
        if !named.contains_key(key) {
            errors.push(format!("{key} has no OpenAPI definition and is not inlined anywhere"));
        }
    }
    let used_defs: BTreeSet<&String> = done.iter().map(|(_, def)| def).collect();
    let none = BTreeSet::new();
    for def in used_defs {
        let names = covered.get(def).unwrap_or(&none);
        for json in &openapi.definitions[def] {
            if !names.contains(json) && json != "apiVersion" && json != "kind" {
                errors.push(format!("{def}.{json} is not carried by any protobuf field"));
            }
        }
    }
    if !errors.is_empty() {
        bail!("cannot build the schema table:\n  {}", errors.join("\n  "));
    }

    // Full proto names: the OpenAPI definition's spelling where there is one, else the Rust ident.
    let full_name = |key: &str| -> String {
        let pb_msg = &pb.messages[key];
        let ident = def_of(key).and_then(|d| d.rsplit_once('.')).map(|(_, n)| n.to_owned());
        format!(
            "k8s.io.{}.{}",
            pb_msg.package,
            ident.unwrap_or_else(|| pb_msg.ident.clone())
        )
    };
    let mut order: Vec<(String, String)> = reachable.iter().map(|k| (full_name(k), k.clone())).collect();
    order.sort();
    let index: HashMap<String, usize> = order.iter().enumerate().map(|(i, (_, k))| (k.clone(), i)).collect();
    let messages = order
        .iter()
        .map(|(name, key)| {
            let mut fields = named[key].clone();
            fields.sort_by_key(|(f, _)| f.tag);
            SchemaMessage {
                name: name.clone(),
                fields,
            }
        })
        .collect::<Vec<_>>();
    for m in &messages {
        if m.fields.windows(2).any(|w| w[0].0.tag == w[1].0.tag) {
            bail!("{} has a duplicated tag", m.name);
        }
    }
    let mut kinds: Vec<(String, String, usize)> = kinds
        .into_iter()
        .map(|(av, kind, key)| (av, kind, index[&key]))
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(Schema { messages, kinds, index })
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering.

fn render(schema: &Schema, deps: &Dependencies) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! The protobuf schema table: every message reachable from the kinds berth decodes, with each field's tag,\n\
         //! JSON name, type and cardinality, plus the (apiVersion, kind) → message index. It holds data only; the walker\n\
         //! in `decode.rs` gives it meaning.\n\
         //!\n\
         //! GENERATED by `cargo run -p berth-xtask -- gen-protobuf` from k8s-pb {} (tags, types) and k8s-openapi {}\n\
         //! `{}` (JSON names). Do not edit by hand: berth-xtask's tests fail when this file drifts from the generator.",
        deps.k8s_pb.version, deps.k8s_openapi.version, OPENAPI_VERSION_DIR
    );
    out.push('\n');
    out.push_str("use crate::schema::{Card, Field, Kind, Message, Ty};\n\n");
    out.push_str("/// Every message, sorted by full proto name; `Ty::Message(i)` indexes this slice.\n");
    out.push_str("pub(crate) static MESSAGES: &[Message] = &[\n");
    for (i, m) in schema.messages.iter().enumerate() {
        let _ = writeln!(out, "    // {i}");
        let _ = writeln!(out, "    Message {{ name: \"{}\", fields: &[", m.name);
        for (f, naming) in &m.fields {
            let (json, inline) = match naming {
                Naming::Json(j) => (j.as_str(), false),
                Naming::Inline => ("", true),
            };
            let ty = match &f.ty {
                PbType::Scalar(s) => format!("Ty::{s:?}"),
                PbType::Message(key) => {
                    let target = schema_index_of(schema, key);
                    format!("Ty::Message({target})")
                }
            };
            let card = match f.card {
                Card::Single => "Card::Single".to_owned(),
                Card::Repeated => "Card::Repeated".to_owned(),
                Card::Map(k) => format!("Card::Map(Ty::{k:?})"),
            };
            let comment = match &f.ty {
                PbType::Message(key) => format!(" // {}", short_name(schema, key)),
                PbType::Scalar(_) => String::new(),
            };
            let _ = writeln!(
                out,
                "        Field {{ tag: {}, json: \"{json}\", ty: {ty}, card: {card}, inline: {inline} }},{comment}",
                f.tag
            );
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n\n");
    out.push_str("/// (apiVersion, kind) of every top-level kind, sorted, with its message.\n");
    out.push_str("pub(crate) static KINDS: &[Kind] = &[\n");
    for (av, kind, i) in &schema.kinds {
        let _ = writeln!(
            out,
            "    Kind {{ api_version: \"{av}\", kind: \"{kind}\", message: {i} }}, // {}",
            schema.messages[*i].name
        );
    }
    out.push_str("];\n");
    out
}

/// Every referenced message is reachable, hence in the index; `usize::MAX` would make the table fail to compile
/// (out of range) rather than point at a wrong message.
fn schema_index_of(schema: &Schema, key: &str) -> usize {
    schema.index.get(key).copied().unwrap_or(usize::MAX)
}

fn short_name(schema: &Schema, key: &str) -> String {
    let i = schema_index_of(schema, key);
    schema
        .messages
        .get(i)
        .map(|m| m.name.trim_start_matches("k8s.io.").to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schema_table_matches_the_generator_output() {
        let generated = generate().expect("generator runs");
        let checked_in = std::fs::read_to_string(output_path()).expect("schema_generated.rs exists");
        assert!(
            generated == checked_in,
            "crates/protobuf/src/schema_generated.rs is stale: run `cargo run -p berth-xtask -- gen-protobuf`"
        );
    }

    #[test]
    fn names_are_compared_without_case_or_separators() {
        assert_eq!(norm("host_ipc"), norm("hostIPC"));
        assert_eq!(norm("pod_i_ps"), norm("podIPs"));
        assert_ne!(norm("host_pid"), norm("hostIPC"));
    }

    #[test]
    fn relative_rust_paths_resolve_to_message_keys() {
        let module: Vec<String> = ["api", "core", "v1"].iter().map(|s| (*s).to_owned()).collect();
        let check = |src: &str, expected: &str| {
            let ty: syn::Type = syn::parse_str(src).expect("type parses");
            assert_eq!(resolve_message_path(&ty, &module).expect("resolves"), expected, "{src}");
        };
        check(
            "::core::option::Option<super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta>",
            "apimachinery.pkg.apis.meta.v1.ObjectMeta",
        );
        check("::prost::alloc::vec::Vec<Container>", "api.core.v1.Container");
        check(
            "::prost::alloc::collections::BTreeMap<::prost::alloc::string::String, Quantity>",
            "api.core.v1.Quantity",
        );
        check(
            "::core::option::Option<::prost::alloc::boxed::Box<JsonSchemaProps>>",
            "api.core.v1.JsonSchemaProps",
        );
    }
}
