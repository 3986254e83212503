//! Sparkplug B protobuf messages (`org.eclipse.tahu.protobuf.Payload`, Eclipse Sparkplug 3.0), by hand.
//!
//! Field numbers and types follow Tahu's `sparkplug_b.proto` (proto2, so every
//! scalar is optional). Only what the decoder reads is typed: the nested
//! messages it does not decode (DataSet, Template, PropertySet, MetaData,
//! extensions) are kept as their raw bytes, which share the length-delimited
//! wire type, so a valid payload carrying them still decodes. No protoc, no
//! build script. This file does not interpret values (see `values.rs`).

/// A Sparkplug B payload: one message of an edge node or device.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the Unix epoch (UTC) when the message was made.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0..=255, per edge node across all its N*/D* messages.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// One metric of a payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the Unix epoch of this value (historical data carries its own).
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A [`super::values::DataType`] code; births carry it, data messages usually do not.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// `MetaData`, not decoded.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub metadata: Option<Vec<u8>>,
    /// `PropertySet`, not decoded.
    #[prost(bytes = "vec", optional, tag = "9")]
    pub properties: Option<Vec<u8>>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19")]
    pub value: Option<Value>,
}

/// A metric's value (`oneof value`).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8/16/32 (two's complement in the low bits), UInt8/16/32.
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    /// Int64 (two's complement), UInt32/64, DateTime (ms since the epoch).
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    #[prost(float, tag = "12")]
    FloatValue(f32),
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    #[prost(string, tag = "15")]
    StringValue(String),
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
    /// `DataSet`, not decoded.
    #[prost(bytes = "vec", tag = "17")]
    DatasetValue(Vec<u8>),
    /// `Template`, not decoded.
    #[prost(bytes = "vec", tag = "18")]
    TemplateValue(Vec<u8>),
    /// `MetricValueExtension`, not decoded.
    #[prost(bytes = "vec", tag = "19")]
    ExtensionValue(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn round_trips_and_nested_messages_stay_opaque() {
        let p = Payload {
            timestamp: Some(1_767_225_600_000),
            seq: Some(3),
            metrics: vec![
                Metric {
                    name: Some("Temp".into()),
                    alias: Some(7),
                    datatype: Some(10),
                    value: Some(Value::DoubleValue(21.5)),
                    ..Metric::default()
                },
                Metric {
                    name: Some("Table".into()),
                    // A DataSet with num_of_columns = 1, columns = ["a"].
                    value: Some(Value::DatasetValue(vec![0x08, 0x01, 0x12, 0x01, b'a'])),
                    ..Metric::default()
                },
            ],
            ..Payload::default()
        };
        let bytes = p.encode_to_vec();
        assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), p);
    }
}
