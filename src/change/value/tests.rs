use proptest::prelude::*;

use super::*;

fn json(type_oid: u32, text: &str) -> String {
    json_bytes(type_oid, text.as_bytes())
}

fn json_bytes(type_oid: u32, text: &[u8]) -> String {
    let mut out = Vec::new();
    write_value(type_oid, text, &mut out);
    String::from_utf8(out).unwrap()
}

const TEXT_ARRAY: u32 = 1009;
const INT4_ARRAY: u32 = 1007;
const INT8_ARRAY: u32 = 1016;
const FLOAT8_ARRAY: u32 = 1022;
const NUMERIC_ARRAY: u32 = 1231;
const BOOL_ARRAY: u32 = 1000;
const JSONB_ARRAY: u32 = 3807;
const JSON_ARRAY: u32 = 199;
const BOX_ARRAY: u32 = 1020;
const UUID_ARRAY: u32 = 2951;

#[test]
fn integers_are_numbers() {
    assert_eq!(json(INT2, "-32768"), "-32768");
    assert_eq!(json(INT4, "0"), "0");
    assert_eq!(json(INT8, "9223372036854775807"), "9223372036854775807");
    assert_eq!(json(OID, "4294967295"), "4294967295");
}

#[test]
fn integers_that_are_not_valid_become_strings() {
    assert_eq!(json(INT4, "12a"), r#""12a""#);
    assert_eq!(json(INT4, ""), r#""""#);
    assert_eq!(json(INT4, "007"), r#""007""#);
    assert_eq!(json(INT4, "-"), r#""-""#);
    assert_eq!(json(INT4, "1.5"), r#""1.5""#);
    assert_eq!(json(INT4, " 1"), r#"" 1""#);
}

#[test]
fn floats_are_numbers_when_json_allows() {
    assert_eq!(json(FLOAT8, "1.5"), "1.5");
    assert_eq!(json(FLOAT8, "-0"), "-0");
    assert_eq!(json(FLOAT8, "1e+300"), "1e+300");
    assert_eq!(json(FLOAT4, "1.5e-07"), "1.5e-07");
    assert_eq!(
        json(FLOAT8, "-1.7976931348623157e+308"),
        "-1.7976931348623157e+308"
    );
}

#[test]
fn float_specials_and_bad_syntax_become_strings() {
    assert_eq!(json(FLOAT8, "NaN"), r#""NaN""#);
    assert_eq!(json(FLOAT8, "Infinity"), r#""Infinity""#);
    assert_eq!(json(FLOAT4, "-Infinity"), r#""-Infinity""#);
    assert_eq!(json(FLOAT8, ".5"), r#"".5""#);
    assert_eq!(json(FLOAT8, "1."), r#""1.""#);
    assert_eq!(json(FLOAT8, "1e"), r#""1e""#);
    assert_eq!(json(FLOAT8, "01"), r#""01""#);
}

#[test]
fn numeric_is_an_exact_string() {
    assert_eq!(
        json(NUMERIC, "12345678901234567890.000000000000000001"),
        r#""12345678901234567890.000000000000000001""#
    );
    assert_eq!(json(NUMERIC, "NaN"), r#""NaN""#);
}

#[test]
fn booleans() {
    assert_eq!(json(BOOL, "t"), "true");
    assert_eq!(json(BOOL, "f"), "false");
    assert_eq!(json(BOOL, "yes"), r#""yes""#);
}

#[test]
fn jsonb_is_embedded_compactly() {
    assert_eq!(
        json(JSONB, r#"{"a": 1, "b": [true, null, "x y"]}"#),
        r#"{"a":1,"b":[true,null,"x y"]}"#
    );
    assert_eq!(json(JSONB, "3"), "3");
    assert_eq!(json(JSONB, r#""s""#), r#""s""#);
}

#[test]
fn json_keeps_order_duplicates_and_precision_but_not_newlines() {
    let stored =
        "{\n  \"z\": 1,\n\t\"a\": 1.000000000000000000001,\r\n  \"z\": \"dup \\\" \\n\"\n}";
    assert_eq!(
        json(JSON, stored),
        r#"{"z":1,"a":1.000000000000000000001,"z":"dup \" \n"}"#
    );
    assert_eq!(json(JSON, "1e999"), "1e999");
}

#[test]
fn invalid_json_becomes_a_string() {
    assert_eq!(json(JSON, "{\"a\":"), r#""{\"a\":""#);
    assert_eq!(json(JSON, "\"raw\nnewline\""), r#""\"raw\nnewline\"""#);
    assert_eq!(json(JSON, "1 2"), r#""1 2""#);
    assert_eq!(json_bytes(JSON, b"\"\xff\""), "\"\\\"\u{fffd}\\\"\"");
}

#[test]
fn other_types_are_exact_strings() {
    assert_eq!(
        json(1184, "2024-02-29 13:14:15.123456+00"),
        r#""2024-02-29 13:14:15.123456+00""#
    );
    assert_eq!(json(17, r"\x0aff"), r#""\\x0aff""#);
    assert_eq!(
        json(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        r#""a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#
    );
    assert_eq!(
        json(16_500, "happy"),
        r#""happy""#,
        "an enum's OID is unknown"
    );
    assert_eq!(
        json(TEXT, "tab\there \"q\" \\ \u{1} é"),
        r#""tab\there \"q\" \\ \u0001 é""#
    );
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    assert_eq!(json_bytes(TEXT, b"a\xffb"), "\"a\u{fffd}b\"");
}

#[test]
fn integer_and_nested_arrays() {
    assert_eq!(json(INT4_ARRAY, "{1,2,3}"), "[1,2,3]");
    assert_eq!(json(INT4_ARRAY, "{{1,2},{3,4}}"), "[[1,2],[3,4]]");
    assert_eq!(
        json(INT8_ARRAY, "{{{1},{2}},{{3},{NULL}}}"),
        "[[[1],[2]],[[3],[null]]]"
    );
    assert_eq!(json(INT4_ARRAY, "{}"), "[]");
    assert_eq!(json(INT4_ARRAY, "{1,NULL,null,Null}"), "[1,null,null,null]");
}

#[test]
fn array_dimension_decoration_is_dropped() {
    assert_eq!(json(INT4_ARRAY, "[0:1]={7,8}"), "[7,8]");
    assert_eq!(json(INT4_ARRAY, "[-1:0][1:1]={{7},{8}}"), "[[7],[8]]");
}

#[test]
fn text_array_quoting_and_escapes() {
    let pg = r#"{"a,b","say \"hi\"","back\\slash","NULL","{braces}"}"#;
    assert_eq!(
        json(TEXT_ARRAY, pg),
        r#"["a,b","say \"hi\"","back\\slash","NULL","{braces}"]"#
    );
    assert_eq!(json(TEXT_ARRAY, r#"{"",NULL," x "}"#), r#"["",null," x "]"#);
    assert_eq!(json(1015, "{abc,d\\,e}"), r#"["abc","d,e"]"#, "varchar[]");
}

#[test]
fn arrays_of_scalar_types_map_their_elements() {
    assert_eq!(json(BOOL_ARRAY, "{t,f,NULL}"), "[true,false,null]");
    assert_eq!(
        json(FLOAT8_ARRAY, "{1.5,NaN,-Infinity,1e+300}"),
        r#"[1.5,"NaN","-Infinity",1e+300]"#
    );
    assert_eq!(json(NUMERIC_ARRAY, "{1.10,NaN}"), r#"["1.10","NaN"]"#);
    assert_eq!(
        json(UUID_ARRAY, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
        r#"["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]"#
    );
}

#[test]
fn jsonb_array_elements_are_embedded() {
    assert_eq!(
        json(JSONB_ARRAY, r#"{"{\"k\": [1]}",NULL}"#),
        r#"[{"k":[1]},null]"#
    );
    assert_eq!(
        json(JSON_ARRAY, "{\"{\\\"a\\\":\n 1}\",\"not json\"}"),
        r#"[{"a":1},"not json"]"#
    );
}

#[test]
fn box_arrays_split_on_semicolons() {
    assert_eq!(
        json(BOX_ARRAY, "{(1,1),(0,0);(3,3),(2,2)}"),
        r#"["(1,1),(0,0)","(3,3),(2,2)"]"#
    );
}

#[test]
fn malformed_array_literals_become_the_whole_text_as_a_string() {
    for bad in [
        "",
        "{",
        "}",
        "{1,2",
        "{1,,2}",
        "{1}x",
        "{{1},2}",
        "{1,{2}}",
        "{\"a}",
        "1,2",
        "[0:1]{1}",
        "[a]={1}",
        "{a\"b}",
        "{\\}",
        "{{{{{{{1}}}}}}}",
    ] {
        let mut expected = Vec::new();
        write_json_string(bad.as_bytes(), &mut expected);
        assert_eq!(json(INT4_ARRAY, bad).into_bytes(), expected, "{bad:?}");
    }
    // Six dimensions, Postgres' maximum, still parse.
    assert_eq!(json(INT4_ARRAY, "{{{{{{1}}}}}}"), "[[[[[[1]]]]]]");
}

#[test]
fn whitespace_around_array_elements_is_tolerated() {
    assert_eq!(json(TEXT_ARRAY, " { a b , \"c\" } "), r#"["a b","c"]"#);
}

proptest! {
    #[test]
    fn write_value_always_produces_valid_json(
        oid in prop_oneof![
            Just(BOOL), Just(INT4), Just(FLOAT8), Just(NUMERIC), Just(JSON), Just(JSONB),
            Just(TEXT), Just(INT4_ARRAY), Just(TEXT_ARRAY), Just(JSONB_ARRAY), Just(BOX_ARRAY),
            Just(FLOAT8_ARRAY), any::<u32>(),
        ],
        text in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            "[{}\",\\\\ aNUL0-9.e+:;\\[\\]=]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        let mut out = Vec::new();
        write_value(oid, &text, &mut out);
        assert_valid_json(&out);
    }
}

#[test]
fn json_with_lone_surrogate_escapes_becomes_a_string() {
    assert_eq!(json(JSON, r#"["\ud800"]"#), r#""[\"\\ud800\"]""#);
    assert_eq!(json(JSON, r#"["\udc00x"]"#), r#""[\"\\udc00x\"]""#);
    assert_eq!(json(JSON, r#"["\ud800\n"]"#), r#""[\"\\ud800\\n\"]""#);
    assert_eq!(
        json(JSON, r#"["\uD83D\uDE00", "\\ud800"]"#),
        r#"["\uD83D\uDE00","\\ud800"]"#
    );
}

/// Valid JSON text on one line. serde_json's `Value` rejects numbers beyond
/// f64 (`1e999`), which JSON itself allows and json columns may hold.
fn assert_valid_json(out: &[u8]) {
    let text = std::str::from_utf8(out).unwrap();
    assert!(!text.contains('\n'), "{text}");
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        assert!(e.to_string().contains("number out of range"), "{text}: {e}");
        serde_json::from_str::<serde::de::IgnoredAny>(text).unwrap();
    }
}

#[test]
fn escapes_after_non_ascii_and_invalid_utf8_late_in_the_text() {
    assert_eq!(json(TEXT, "é\"\n€"), "\"é\\\"\\n€\"");
    assert_eq!(
        json_bytes(TEXT, b"\xc3\xa9\"\n\xff"),
        "\"é\\\"\\n\u{fffd}\""
    );
}

proptest! {
    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does(s in "\\PC*|[\\x00-\\x7f]{0,40}|.{0,40}") {
        let mut out = Vec::new();
        write_json_string(s.as_bytes(), &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
    }
}
