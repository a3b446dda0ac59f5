use std::io::Read;

use super::*;

fn read_all(meter: &StreamMeter, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    meter.reader(bytes).read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn a_stream_within_its_bound_reads_whole() {
    let meter = StreamMeter::new(10_000, Limit::LayerUnpackedBytes);
    let data = vec![7u8; 4_000];
    assert_eq!(read_all(&meter, &data).unwrap(), data);
    assert_eq!(meter.read(), 4_000);
    assert_eq!(meter.exceeded(), None);
}

#[test]
fn a_stream_over_its_bound_is_cut_and_names_the_limit() {
    let meter = StreamMeter::new(1_000, Limit::ImageUnpackedBytes);
    meter.entry_done();
    assert!(read_all(&meter, &[0u8; 5_000]).is_err());
    assert_eq!(meter.exceeded(), Some(Limit::ImageUnpackedBytes));
    // Once over, it stays refused.
    assert!(meter.reader(&[1u8][..]).read(&mut [0u8; 1]).is_err());
}

#[test]
fn metadata_between_entries_is_bounded_and_reset_by_each_entry() {
    let meter = StreamMeter::new(u64::MAX, Limit::LayerUnpackedBytes);
    let chunk = vec![0u8; (ENTRY_METADATA_BYTES_MAX / 2) as usize];
    read_all(&meter, &chunk).unwrap();
    meter.entry_done();
    read_all(&meter, &chunk).unwrap();
    // An entry's own data is not metadata, however big.
    meter.entry_started();
    for _ in 0..4 {
        read_all(&meter, &chunk).unwrap();
    }
    meter.entry_done();
    read_all(&meter, &chunk).unwrap();
    read_all(&meter, &chunk).unwrap();
    assert!(read_all(&meter, &[0u8; 1]).is_err());
    assert_eq!(meter.exceeded(), Some(Limit::EntryMetadataBytes));
}

#[test]
fn fits_checks_a_declared_size_against_what_is_left() {
    let meter = StreamMeter::new(1_000, Limit::LayerUnpackedBytes);
    read_all(&meter, &[0u8; 600]).unwrap();
    assert!(meter.fits(400));
    assert!(!meter.fits(401));
    assert!(!meter.fits(u64::MAX));
}

#[test]
fn paths_and_names_over_their_limits_are_refused() {
    let limits = ImportLimits {
        path_bytes_max: 20,
        name_bytes_max: 8,
        ..ImportLimits::default()
    };
    let what = || "entry".to_owned();
    limits.check_path(Path::new("a/bcdefgh/ij"), what).unwrap();
    let long_path = limits
        .check_path(Path::new("aaaaaaa/bbbbbbb/ccccccc"), what)
        .unwrap_err();
    assert!(matches!(
        long_path,
        Error::ImportLimit {
            limit: Limit::PathBytes,
            max: 20,
            ..
        }
    ));
    let long_name = limits
        .check_path(Path::new("a/123456789"), what)
        .unwrap_err();
    assert!(matches!(
        long_name,
        Error::ImportLimit {
            limit: Limit::NameBytes,
            max: 8,
            ..
        }
    ));
    assert!(
        long_name.to_string().contains("rebuild the image"),
        "{long_name}"
    );
}

#[test]
fn the_default_limits_refuse_a_gigabyte_layer() {
    let limits = ImportLimits::default();
    assert!(limits.layer_unpacked_bytes_max < 1 << 30);
    let err = limits
        .check(Limit::LayerUnpackedBytes, 1 << 30, || "layer 0".to_owned())
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("--import-layer-unpacked-max"), "{message}");
    assert!(message.contains("layer 0"), "{message}");
}

#[test]
fn the_disk_budget_refuses_what_would_eat_the_reserve() {
    let dir = std::env::current_dir().unwrap();
    let free = free_bytes(&dir).unwrap();
    let mut nothing_reserved = DiskBudget::new(&dir, 0);
    nothing_reserved.claim(u64::MAX).unwrap();
    // Other builds write to this disk meanwhile: leave them 256 MiB of slack.
    let mut tight = DiskBudget::new(&dir, free.saturating_sub(256 << 20));
    tight.claim(4096).unwrap();
    let err = tight.claim(1 << 30).unwrap_err();
    assert!(matches!(err, Error::DiskReserve { .. }), "{err}");
    assert!(err.to_string().contains("reserve"), "{err}");
}

#[test]
fn a_fetch_is_refused_from_the_recorded_sizes_before_any_byte() {
    let limits = ImportLimits {
        layer_bytes_max: 1_000,
        image_bytes_max: 2_500,
        ..ImportLimits::default()
    };
    // The manifest and config are not layers: their size counts only
    // towards the image.
    limits
        .check_fetch("web", &[("m", 900), ("c", 900), ("l1", 500)])
        .unwrap();
    let big_layer = limits
        .check_fetch("web", &[("m", 10), ("c", 10), ("l1", 1_001)])
        .unwrap_err();
    assert!(
        matches!(
            big_layer,
            Error::ImportLimit {
                limit: Limit::LayerBytes,
                max: 1_000,
                ..
            }
        ),
        "{big_layer}"
    );
    assert!(big_layer.to_string().contains("l1"), "{big_layer}");
    let big_image = limits
        .check_fetch(
            "web",
            &[
                ("m", 10),
                ("c", 10),
                ("l1", 1_000),
                ("l2", 1_000),
                ("l3", 900),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(
            big_image,
            Error::ImportLimit {
                limit: Limit::ImageBytes,
                ..
            }
        ),
        "{big_image}"
    );
}
