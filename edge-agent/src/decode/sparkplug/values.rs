//! Sparkplug B datatypes: a metric's value field, read as its datatype says, to one number.
//!
//! Integer types take the value from `int_value` or `long_value`, whichever
//! the encoder used (Tahu puts UInt32 in `long_value`, other encoders in
//! `int_value`), keep the type's width and sign-extend signed types, so an
//! Int8 of -1 sent as 0xFF or as 0xFFFFFFFF both read -1. Booleans read 1/0,
//! DateTime its milliseconds. Strings and bytes are not numbers
//! (`wrong_type`); DataSet, Template, PropertySet, arrays and extensions are
//! not read (`unsupported`). This file knows nothing of names, aliases or time.

use wire::Reason;

use super::proto::Value;

/// Sparkplug B datatype codes (Sparkplug 3.0, `DataType` enum).
pub mod code {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT8: u32 = 5;
    pub const UINT16: u32 = 6;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
    pub const STRING: u32 = 12;
    pub const DATETIME: u32 = 13;
    pub const TEXT: u32 = 14;
    pub const UUID: u32 = 15;
    pub const BYTES: u32 = 17;
    pub const FILE: u32 = 18;
}

/// The integer carried by `int_value` or `long_value`, if that is the field used.
fn raw_integer(value: &Value) -> Option<u64> {
    match value {
        Value::IntValue(v) => Some(u64::from(*v)),
        Value::LongValue(v) => Some(*v),
        _ => None,
    }
}

/// Reads `value` as `datatype` (the metric's own, else its birth's; 0 when
/// neither said). Unknown datatype: numbers are taken as they come.
pub fn to_number(datatype: u32, value: &Value) -> Result<f64, Reason> {
    use code::*;
    let integer = |bits: u32, signed: bool| -> Result<f64, Reason> {
        let raw = raw_integer(value).ok_or(Reason::WrongType)?;
        let shift = 64 - bits;
        Ok(if signed {
            ((raw << shift) as i64 >> shift) as f64
        } else {
            (raw << shift >> shift) as f64
        })
    };
    match datatype {
        INT8 => integer(8, true),
        INT16 => integer(16, true),
        INT32 => integer(32, true),
        INT64 => integer(64, true),
        UINT8 => integer(8, false),
        UINT16 => integer(16, false),
        UINT32 => integer(32, false),
        UINT64 | DATETIME => integer(64, false),
        FLOAT | DOUBLE | BOOLEAN | 0 => match value {
            Value::FloatValue(v) => Ok(f64::from(*v)),
            Value::DoubleValue(v) => Ok(*v),
            Value::BooleanValue(b) => Ok(f64::from(u8::from(*b))),
            Value::IntValue(v) if datatype == 0 => Ok(f64::from(*v)),
            Value::LongValue(v) if datatype == 0 => Ok(*v as f64),
            Value::DatasetValue(_) | Value::TemplateValue(_) | Value::ExtensionValue(_) => {
                Err(Reason::Unsupported)
            }
            _ => Err(Reason::WrongType),
        },
        STRING | TEXT | UUID | BYTES | FILE => Err(Reason::WrongType),
        _ => Err(Reason::Unsupported),
    }
    .and_then(|v| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Reason::NonFinite)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::code::*;
    use super::*;

    #[test]
    fn signed_integers_sign_extend_from_either_width() {
        assert_eq!(to_number(INT8, &Value::IntValue(0xFF)), Ok(-1.0));
        assert_eq!(to_number(INT8, &Value::IntValue(0xFFFF_FFFF)), Ok(-1.0));
        assert_eq!(to_number(INT16, &Value::IntValue(0x8000)), Ok(-32768.0));
        assert_eq!(
            to_number(INT32, &Value::IntValue(0x8000_0000)),
            Ok(-2_147_483_648.0)
        );
        assert_eq!(to_number(INT64, &Value::LongValue(u64::MAX)), Ok(-1.0));
        assert_eq!(to_number(UINT8, &Value::IntValue(0xFF)), Ok(255.0));
        assert_eq!(to_number(UINT32, &Value::LongValue(4_000_000_000)), Ok(4e9));
        assert_eq!(to_number(UINT32, &Value::IntValue(4_000_000_000)), Ok(4e9));
        assert_eq!(
            to_number(UINT64, &Value::LongValue(u64::MAX)),
            Ok(u64::MAX as f64)
        );
    }

    #[test]
    fn other_types_read_or_are_counted() {
        assert_eq!(to_number(FLOAT, &Value::FloatValue(1.5)), Ok(1.5));
        assert_eq!(to_number(BOOLEAN, &Value::BooleanValue(true)), Ok(1.0));
        assert_eq!(to_number(DATETIME, &Value::LongValue(5)), Ok(5.0));
        assert_eq!(to_number(0, &Value::DoubleValue(2.0)), Ok(2.0));
        assert_eq!(
            to_number(DOUBLE, &Value::DoubleValue(f64::NAN)),
            Err(Reason::NonFinite)
        );
        assert_eq!(
            to_number(STRING, &Value::StringValue("x".into())),
            Err(Reason::WrongType)
        );
        assert_eq!(
            to_number(INT32, &Value::FloatValue(1.0)),
            Err(Reason::WrongType)
        );
        assert_eq!(
            to_number(16, &Value::DatasetValue(vec![])),
            Err(Reason::Unsupported)
        );
        assert_eq!(
            to_number(0, &Value::TemplateValue(vec![])),
            Err(Reason::Unsupported)
        );
        assert_eq!(
            to_number(22, &Value::BytesValue(vec![1])),
            Err(Reason::Unsupported)
        );
    }
}
