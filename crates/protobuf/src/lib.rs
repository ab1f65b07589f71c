//! Decoding Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON objects.
//! (Stub: being implemented.)
