//! Service address allocation: cluster IPs from the service CIDR and node ports from 30000–32767. Each
//! allocation is its own key in the store (`/registry/allocations/clusterip/10.96.0.7`), created with the
//! store's atomic create, so two services can never be given the same address even under concurrent creates,
//! and allocations survive restarts with the services that hold them.

use std::net::Ipv4Addr;
use std::sync::Arc;

use berth_api::{ApiError, Cause, ResourceInfo};
use berth_store::{Store, StoreError};
use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};

use crate::error::Result;

/// The node-port range upstream uses by default.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Allocates and releases service IPs and node ports.
#[derive(Clone)]
pub struct Allocator {
    store: Arc<dyn Store>,
    base: u32,
    size: u32,
}

/// Allocation keys created by one write, to release if the write fails.
#[derive(Debug, Default)]
pub struct Allocated(Vec<String>);

fn ip_key(ip: &str) -> String {
    format!("/registry/allocations/clusterip/{ip}")
}

fn port_key(port: i64) -> String {
    format!("/registry/allocations/nodeport/{port}")
}

fn invalid(obj: &Value, field: &str, message: String) -> ApiError {
    let r = berth_api::resources::by_plural("", "v1", "services");
    let name = berth_api::meta::name(obj).to_string();
    let cause = Cause {
        reason: "FieldValueInvalid".into(),
        message,
        field: field.into(),
    };
    match r {
        Some(r) => ApiError::invalid(r, &name, vec![cause]),
        None => ApiError::invalid_request(cause.message),
    }
}

fn is_service(r: &ResourceInfo) -> bool {
    r.kind == "Service" && r.group.is_empty()
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(
        svc.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    svc.pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .filter(|s| s != "None")
                .collect()
        })
        .unwrap_or_default()
}

impl Allocator {
    /// An allocator handing out addresses from `cidr` (e.g. `10.96.0.0/16`). The first address is reserved for
    /// the `kubernetes` service, as upstream does.
    pub fn new(store: Arc<dyn Store>, cidr: &str) -> anyhow::Result<Self> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("service CIDR {cidr:?} has no prefix length"))?;
        let ip: Ipv4Addr = ip.parse()?;
        let bits: u32 = bits.parse()?;
        anyhow::ensure!(
            (8..=28).contains(&bits),
            "service CIDR prefix length must be between 8 and 28"
        );
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        Ok(Allocator { store, base, size })
    }

    /// The first usable address of the range, given to the `kubernetes` service.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }

    async fn claim(&self, key: String, owner: &str) -> Result<bool> {
        match self.store.create(&key, Bytes::from(owner.to_string())).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => {
                // Idempotent for the same owner (an update re-claiming its own address).
                let held = self.store.get(&key).await?;
                Ok(held.is_some_and(|kv| kv.value.as_ref() == owner.as_bytes()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// On update, carries the addresses the service already holds into the new object when the client left
    /// them out (kubectl apply and replace of a manifest without clusterIP), as upstream's service REST does.
    pub fn keep_allocated(&self, r: &ResourceInfo, old: &Value, new: &mut Value) {
        if !is_service(r) {
            return;
        }
        for f in ["clusterIP", "clusterIPs"] {
            let empty = new
                .pointer(&format!("/spec/{f}"))
                .is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
            if empty {
                if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                    new["spec"][f] = v.clone();
                }
            }
        }
        if needs_node_ports(new) {
            let old_ports = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    if p.get("nodePort").is_some() {
                        continue;
                    }
                    let same = old_ports
                        .iter()
                        .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
                    if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
    }

    /// Fills in and claims the cluster IP and node ports of a Service being written. `old` is the stored object
    /// on update. Returns what was newly claimed, so a failed write can give it back.
    pub async fn allocate(
        &self,
        r: &ResourceInfo,
        owner: &str,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<Allocated> {
        let mut out = Allocated::default();
        if !is_service(r) {
            return Ok(out);
        }
        if let Err(e) = self.allocate_into(owner, svc, &mut out).await {
            self.release_new(&out).await;
            return Err(e);
        }
        if let Some(old) = old {
            // Give back what the old version held and the new one no longer does.
            let keep_ips = cluster_ips(svc);
            let keep_ports = node_ports(svc);
            for ip in cluster_ips(old).into_iter().filter(|ip| !keep_ips.contains(ip)) {
                self.drop_key(&ip_key(&ip)).await;
            }
            for p in node_ports(old).into_iter().filter(|p| !keep_ports.contains(p)) {
                self.drop_key(&port_key(p)).await;
            }
        }
        Ok(out)
    }

    async fn allocate_into(&self, owner: &str, svc: &mut Value, out: &mut Allocated) -> Result<()> {
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty != "ExternalName" {
            let requested = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if requested == "None" {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            } else if requested.is_empty() {
                let ip = self.random_ip(owner, out).await?;
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = json!([ip]);
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    invalid(
                        svc,
                        "spec.clusterIPs",
                        format!("Invalid value: [\"{requested}\"]: must be a valid IP address"),
                    )
                })?;
                if !self.contains(ip) {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}",
                            Ipv4Addr::from(self.base),
                            32 - self.size.trailing_zeros()
                        ),
                    )
                    .into());
                }
                let key = ip_key(&requested);
                let fresh = self.store.get(&key).await?.is_none();
                if !self.claim(key.clone(), owner).await? {
                    return Err(invalid(
                        svc,
                        "spec.clusterIPs",
                        format!("Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: provided IP is already allocated"),
                    )
                    .into());
                }
                if fresh {
                    out.0.push(key);
                }
                svc["spec"]["clusterIPs"] = json!([requested]);
            }
        }
        if needs_node_ports(svc) {
            let count = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            for i in 0..count {
                let given = svc["spec"]["ports"][i].get("nodePort").and_then(Value::as_i64);
                match given {
                    Some(p) => {
                        if !NODE_PORT_RANGE.contains(&u16::try_from(p).unwrap_or(0)) {
                            return Err(invalid(
                                svc,
                                &format!("spec.ports[{i}].nodePort"),
                                format!("Invalid value: {p}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                            )
                            .into());
                        }
                        let key = port_key(p);
                        let fresh = self.store.get(&key).await?.is_none();
                        if !self.claim(key.clone(), owner).await? {
                            return Err(invalid(
                                svc,
                                &format!("spec.ports[{i}].nodePort"),
                                format!("Invalid value: {p}: provided port is already allocated"),
                            )
                            .into());
                        }
                        if fresh {
                            out.0.push(key);
                        }
                    }
                    None => {
                        let p = self.random_port(owner, out).await?;
                        svc["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                }
            }
        }
        Ok(())
    }

    async fn random_ip(&self, owner: &str, out: &mut Allocated) -> Result<String> {
        let usable = self.size.saturating_sub(3).max(1);
        let start = rand::thread_rng().gen_range(0..usable);
        for i in 0..usable.min(4096) {
            // Offset 0 is the network, 1 the kubernetes service, size-1 the broadcast address.
            let ip = Ipv4Addr::from(self.base + 2 + (start + i) % usable).to_string();
            let key = ip_key(&ip);
            if self.store.get(&key).await?.is_none() && self.claim(key.clone(), owner).await? {
                out.0.push(key);
                return Ok(ip);
            }
        }
        Err(ApiError::internal("the service IP range is full").into())
    }

    async fn random_port(&self, owner: &str, out: &mut Allocated) -> Result<i64> {
        let span = (*NODE_PORT_RANGE.end() - *NODE_PORT_RANGE.start()) as i64 + 1;
        let start = rand::thread_rng().gen_range(0..span);
        for i in 0..span {
            let p = *NODE_PORT_RANGE.start() as i64 + (start + i) % span;
            let key = port_key(p);
            if self.store.get(&key).await?.is_none() && self.claim(key.clone(), owner).await? {
                out.0.push(key);
                return Ok(p);
            }
        }
        Err(ApiError::internal("the node port range is full").into())
    }

    /// Claims a specific address for a built-in service (the `kubernetes` service at start-up).
    pub async fn reserve_ip(&self, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        self.claim(ip_key(&ip.to_string()), owner).await
    }

    async fn drop_key(&self, key: &str) {
        match self.store.delete(key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(key, error = %e, "could not release an allocation"),
        }
    }

    /// Gives back allocations made by a write that then failed.
    pub async fn release_new(&self, a: &Allocated) {
        for k in &a.0 {
            self.drop_key(k).await;
        }
    }

    /// Gives back everything a deleted object held.
    pub async fn release(&self, r: &ResourceInfo, obj: &Value) {
        if !is_service(r) {
            return;
        }
        for ip in cluster_ips(obj) {
            self.drop_key(&ip_key(&ip)).await;
        }
        for p in node_ports(obj) {
            self.drop_key(&port_key(p)).await;
        }
    }
}
