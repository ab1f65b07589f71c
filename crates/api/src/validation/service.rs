//! Validation of the service-discovery kinds: Service, Endpoints and EndpointSlice (`ValidateService`,
//! `ValidateEndpoints`, `discovery/validation` upstream). IP allocation is the server's job; this only checks
//! what the client sent and that an allocated cluster IP is not changed.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod::{port_num_or_name, PROTOCOLS};
use super::{arr_at, duplicate, forbidden, go_quote, invalid, names, not_supported, required, str_at};
use crate::status::Cause;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

fn is_headless(spec: &Value) -> bool {
    str_at(spec, "clusterIP") == "None"
}

/// Upstream's `ValidateService` (the commonly hit parts) and the cluster-IP immutability of
/// `ValidateServiceUpdate`.
pub(super) fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = str_at(spec, "type");
    let ports = arr_at(spec, "ports");
    if ports.is_empty() && !is_headless(spec) && ty != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        if !arr_at(spec, "clusterIPs").is_empty() {
            errs.push(forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
        }
        let cname = str_at(spec, "externalName");
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(required("spec.externalName", ""));
        } else {
            for msg in names::dns1123_subdomain(cname) {
                errs.push(invalid("spec.externalName", &go_quote(cname), &msg));
            }
        }
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        service_port(p, ports.len() > 1, &mut port_names, &format!("spec.ports[{i}]"), errs);
    }
    super::labels(spec.get("selector"), "spec.selector", errs);
    match str_at(spec, "sessionAffinity") {
        "" => errs.push(required("spec.sessionAffinity", "")),
        "None" | "ClientIP" => {}
        other => errs.push(not_supported("spec.sessionAffinity", other, &["ClientIP", "None"])),
    }
    for (i, ip) in arr_at(spec, "clusterIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if ip != "None" && !names::is_ip(ip) {
            errs.push(invalid(
                &format!("spec.clusterIPs[{i}]"),
                &go_quote(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    match ty {
        "" => errs.push(required("spec.type", "")),
        t if !SERVICE_TYPES.contains(&t) => errs.push(not_supported("spec.type", t, SERVICE_TYPES)),
        _ => {}
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n != 0) {
                errs.push(forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = str_at(p, "protocol").to_string();
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
            if !node_ports.insert((proto.clone(), np)) {
                errs.push(duplicate(&format!("spec.ports[{i}].nodePort"), &np.to_string()));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !port_keys.insert((proto.clone(), port)) {
            errs.push(duplicate(
                &format!("spec.ports[{i}]"),
                &format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, \
                     TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    go_quote(&proto)
                ),
            ));
        }
    }
    let etp = str_at(spec, "externalTrafficPolicy");
    if !etp.is_empty() && ty == "ClusterIP" && arr_at(spec, "externalIPs").is_empty() {
        errs.push(invalid(
            "spec.externalTrafficPolicy",
            &go_quote(etp),
            "may only be set for externally-accessible services",
        ));
    }
    // An allocated cluster IP may not change (except when the Service becomes or stops being ExternalName).
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let old_ips = arr_at(old_spec, "clusterIPs");
        let new_ips = arr_at(spec, "clusterIPs");
        let involves_external_name = ty == "ExternalName" || str_at(old_spec, "type") == "ExternalName";
        if !involves_external_name {
            if let (Some(o), Some(n)) = (old_ips.first(), new_ips.first()) {
                if o != n {
                    let shown: Vec<String> = new_ips.iter().map(|v| go_quote(v.as_str().unwrap_or(""))).collect();
                    errs.push(invalid(
                        "spec.clusterIPs[0]",
                        &format!("[]string{{{}}}", shown.join(", ")),
                        "may not change once set",
                    ));
                }
            }
        }
    }
}

fn service_port(p: &Value, require_name: bool, seen: &mut BTreeSet<String>, path: &str, errs: &mut Vec<Cause>) {
    let name = str_at(p, "name");
    if require_name && name.is_empty() {
        errs.push(required(&format!("{path}.name"), ""));
    } else if !name.is_empty() {
        for msg in names::dns1123_label(name) {
            errs.push(invalid(&format!("{path}.name"), &go_quote(name), &msg));
        }
        if !seen.insert(name.to_string()) {
            errs.push(duplicate(&format!("{path}.name"), &go_quote(name)));
        }
    }
    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
    for msg in names::port_num(port) {
        errs.push(invalid(&format!("{path}.port"), &port.to_string(), &msg));
    }
    protocol(
        p.get("protocol").and_then(Value::as_str),
        &format!("{path}.protocol"),
        errs,
    );
    if p.get("targetPort").is_some_and(|t| !t.is_null()) {
        port_num_or_name(p.get("targetPort"), &format!("{path}.targetPort"), errs);
    }
}

fn protocol(p: Option<&str>, path: &str, errs: &mut Vec<Cause>) {
    match p {
        None | Some("") => errs.push(required(path, "")),
        Some(p) if !PROTOCOLS.contains(&p) => errs.push(not_supported(path, p, PROTOCOLS)),
        _ => {}
    }
}

/// Upstream's `ValidateEndpoints`: each subset has addresses (valid IPs) and valid ports.
pub(super) fn validate_endpoints(obj: &Value, errs: &mut Vec<Cause>) {
    for (i, ss) in arr_at(obj, "subsets").iter().enumerate() {
        let idx = format!("subsets[{i}]");
        let addrs = arr_at(ss, "addresses");
        let not_ready = arr_at(ss, "notReadyAddresses");
        if addrs.is_empty() && not_ready.is_empty() {
            errs.push(required(&idx, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (key, list) in [("addresses", addrs), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let ip = str_at(a, "ip");
                let p = format!("{idx}.{key}[{j}].ip");
                if !names::is_ip(ip) {
                    errs.push(invalid(&p, &go_quote(ip), "must be a valid IP address"));
                }
                let host = str_at(a, "hostname");
                if !host.is_empty() {
                    for msg in names::dns1123_label(host) {
                        errs.push(invalid(&format!("{idx}.{key}[{j}].hostname"), &go_quote(host), &msg));
                    }
                }
            }
        }
        let ports = arr_at(ss, "ports");
        for (j, p) in ports.iter().enumerate() {
            let ppath = format!("{idx}.ports[{j}]");
            let name = str_at(p, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(&format!("{ppath}.name"), ""));
            } else if !name.is_empty() {
                for msg in names::dns1123_label(name) {
                    errs.push(invalid(&format!("{ppath}.name"), &go_quote(name), &msg));
                }
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            for msg in names::port_num(port) {
                errs.push(invalid(&format!("{ppath}.port"), &port.to_string(), &msg));
            }
            protocol(
                p.get("protocol").and_then(Value::as_str),
                &format!("{ppath}.protocol"),
                errs,
            );
        }
    }
}

/// Upstream's `ValidateEndpointSliceCreate`: a supported address type, then endpoints and ports.
pub(super) fn validate_endpoint_slice(obj: &Value, errs: &mut Vec<Cause>) {
    let address_type = str_at(obj, "addressType");
    match address_type {
        "" => {
            errs.push(required("addressType", ""));
            return;
        }
        "IPv4" | "IPv6" | "FQDN" => {}
        other => {
            errs.push(not_supported("addressType", other, &["FQDN", "IPv4", "IPv6"]));
            return;
        }
    }
    for (i, e) in arr_at(obj, "endpoints").iter().enumerate() {
        let apath = format!("endpoints[{i}].addresses");
        let addrs = arr_at(e, "addresses");
        if addrs.is_empty() {
            errs.push(required(&apath, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(super::cause_too_many(&apath, addrs.len(), 100));
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let p = format!("{apath}[{j}]");
            match address_type {
                "IPv4" if !names::is_ipv4(a) => errs.push(invalid(&p, &go_quote(a), "must be a valid IPv4 address")),
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(invalid(&p, &go_quote(a), "must be a valid IPv6 address"))
                }
                "FQDN" if !names::is_dns1123_subdomain(&a.to_lowercase()) => errs.push(invalid(
                    &p,
                    &go_quote(a),
                    "should be a domain with at least two segments separated by dots",
                )),
                _ => {}
            }
        }
        if let Some(node) = e.get("nodeName").and_then(Value::as_str) {
            for msg in names::dns1123_subdomain(node) {
                errs.push(invalid(&format!("endpoints[{i}].nodeName"), &go_quote(node), &msg));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, p) in arr_at(obj, "ports").iter().enumerate() {
        let ppath = format!("ports[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(invalid(&format!("{ppath}.name"), &go_quote(name), &msg));
            }
        }
        if !seen.insert(name.to_string()) {
            errs.push(duplicate(&format!("{ppath}.name"), &go_quote(name)));
        }
        protocol(
            p.get("protocol").and_then(Value::as_str),
            &format!("{ppath}.protocol"),
            errs,
        );
        if let Some(port) = p.get("port").and_then(Value::as_i64) {
            for msg in names::port_num(port) {
                errs.push(invalid(&format!("{ppath}.port"), &port.to_string(), &msg));
            }
        }
    }
}
