use proptest::prelude::*;

use super::*;

fn check_cpu(text: &str, millis: u64) {
    assert_eq!(parse_cpu_millis(text), Ok(millis), "cpu {text:?}");
}

fn check_memory(text: &str, bytes: u64) {
    assert_eq!(parse_memory_bytes(text), Ok(bytes), "memory {text:?}");
}

#[test]
fn cpu_reads_cores_and_millicores() {
    check_cpu("500m", 500);
    check_cpu("0.5", 500);
    check_cpu("2", 2000);
    check_cpu("1.5", 1500);
    check_cpu(".25", 250);
    check_cpu("0.001", 1);
    check_cpu("+3", 3000);
    check_cpu("0", 0);
    check_cpu("0.100", 100);
    check_cpu("2.0m", 2);
}

#[test]
fn memory_reads_binary_decimal_plain_and_exponent() {
    check_memory("128Mi", 128 << 20);
    check_memory("1Gi", 1 << 30);
    check_memory("512M", 512_000_000);
    check_memory("1000000", 1_000_000);
    check_memory("1.5Gi", 1_610_612_736);
    check_memory("1k", 1000);
    check_memory("4Ki", 4096);
    check_memory("2Ti", 2 << 40);
    check_memory("1e9", 1_000_000_000);
    check_memory("12E6", 12_000_000);
    check_memory("1E", 1_000_000_000_000_000_000);
    check_memory("15Ei", 15 << 60);
    // Kubernetes rounds a fraction of a byte up.
    check_memory("1.1Ki", 1127);
    check_memory("0.5", 1);
    check_memory("1e-3", 1);
    check_memory("0", 0);
}

#[test]
fn bad_quantities_say_what_is_accepted() {
    for text in [
        "", "-1", "abc", "1.2.3", ".", "12Qi", "400m", "1e", "1ex", "1 Mi",
    ] {
        let error = parse_memory_bytes(text).expect_err(text).to_string();
        assert!(
            error.contains("expected") && error.contains("Mi"),
            "memory {text:?}: {error}"
        );
    }
    for text in ["", "-500m", "x", "1Gi", "500n", "1k"] {
        let error = parse_cpu_millis(text).expect_err(text).to_string();
        assert!(error.contains("500m"), "cpu {text:?}: {error}");
    }
    assert!(parse_memory_bytes("400m")
        .unwrap_err()
        .to_string()
        .contains("did you mean 400Mi?"));
    assert!(matches!(
        parse_cpu_millis("-1"),
        Err(QuantityError::Negative { .. })
    ));
    assert!(matches!(
        parse_cpu_millis("0.0001"),
        Err(QuantityError::TooPrecise { .. })
    ));
    assert!(matches!(
        parse_cpu_millis("1.5m"),
        Err(QuantityError::TooPrecise { .. })
    ));
    assert!(matches!(
        parse_memory_bytes("16Ei"),
        Err(QuantityError::Overflow { .. })
    ));
    assert!(matches!(
        parse_memory_bytes("1e20"),
        Err(QuantityError::Overflow { .. })
    ));
    assert!(matches!(
        parse_memory_bytes("99999999999999999999999999999999999"),
        Err(QuantityError::Overflow { .. })
    ));
    assert!(matches!(
        parse_cpu_millis("18446744073709552"),
        Err(QuantityError::Overflow { .. })
    ));
}

#[test]
fn format_picks_the_largest_exact_unit() {
    assert_eq!(format_cpu_millis(500), "500m");
    assert_eq!(format_cpu_millis(2000), "2");
    assert_eq!(format_cpu_millis(0), "0");
    assert_eq!(format_memory_bytes(128 << 20), "128Mi");
    assert_eq!(format_memory_bytes(512_000_000), "512M");
    assert_eq!(format_memory_bytes(1536 << 20), "1536Mi");
    assert_eq!(format_memory_bytes(1 << 30), "1Gi");
    assert_eq!(format_memory_bytes(1_000_000), "1M");
    assert_eq!(format_memory_bytes(1001), "1001");
    assert_eq!(format_memory_bytes(0), "0");
}

proptest! {
    #[test]
    fn cpu_round_trips(millis in any::<u64>()) {
        prop_assert_eq!(parse_cpu_millis(&format_cpu_millis(millis)), Ok(millis));
    }

    #[test]
    fn memory_round_trips(bytes in any::<u64>()) {
        prop_assert_eq!(parse_memory_bytes(&format_memory_bytes(bytes)), Ok(bytes));
    }

    #[test]
    fn decimal_cores_equal_millicores(whole in 0u64..1_000_000, thousandths in 0u64..1000) {
        let text = format!("{whole}.{thousandths:03}");
        prop_assert_eq!(parse_cpu_millis(&text), Ok(whole * 1000 + thousandths));
        prop_assert_eq!(
            parse_cpu_millis(&format!("{}m", whole * 1000 + thousandths)),
            Ok(whole * 1000 + thousandths)
        );
    }

    #[test]
    fn binary_suffixes_scale_exactly(count in 0u64..(1 << 20), shift_index in 0usize..4) {
        let (suffix, shift) = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40)][shift_index];
        prop_assert_eq!(parse_memory_bytes(&format!("{count}{suffix}")), Ok(count << shift));
    }

    #[test]
    fn parsing_never_panics(text in "\\PC{0,24}") {
        let _ = parse_cpu_millis(&text);
        let _ = parse_memory_bytes(&text);
    }
}
