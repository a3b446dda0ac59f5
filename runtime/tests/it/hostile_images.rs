//! Hostile image archives: bombs, floods of files, long paths, forged diff
//! ids, device nodes, links out of the archive. Each is refused with what
//! it ran into named and the store left as it was (`refused`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, FlushCompress};
use runtime::{Error, ImportLimits, Limit};

use crate::bad_input::refused;
use crate::support::{self, Entry, Env, LayoutImage};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MIB: u64 = 1024 * 1024;

fn image(layers: Vec<Vec<u8>>, media: &str, name: &str) -> LayoutImage {
    LayoutImage {
        layers,
        process: serde_json::json!({"Cmd": ["/bin/true"]}),
        layer_media_type: media.into(),
        name: name.into(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn is_limit(error: &Error, wanted: Limit) -> bool {
    matches!(error, Error::ImportLimit { limit, .. } if *limit == wanted)
}

/// A gzip stream of `tar_header` followed by `zeros` zero bytes, built
/// without compressing them one by one: 1 MiB of zeros is deflated once
/// with a full flush (byte-aligned, no reference to earlier data) and that
/// block repeated; the CRC is combined the same way. A 1 GiB bomb costs
/// ~1 MiB and milliseconds.
fn zero_bomb(tar_header: &[u8], zeros: u64) -> Vec<u8> {
    fn deflate(input: &[u8], flush: FlushCompress) -> Vec<u8> {
        let mut compress = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(input.len() + 1024);
        compress.compress_vec(input, &mut out, flush).unwrap();
        assert_eq!(compress.total_in(), input.len() as u64);
        out
    }
    let chunk = vec![0u8; MIB as usize];
    assert_eq!(zeros % MIB, 0);
    let mut crc = flate2::Crc::new();
    crc.update(tar_header);
    let mut chunk_crc = flate2::Crc::new();
    chunk_crc.update(&chunk);
    // gzip header: magic, deflate, no flags, no mtime, no extra flags, unix.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend(deflate(tar_header, FlushCompress::Full));
    let block = deflate(&chunk, FlushCompress::Full);
    for _ in 0..zeros / MIB {
        out.extend_from_slice(&block);
        crc.combine(&chunk_crc);
    }
    out.extend(deflate(&[], FlushCompress::Finish));
    let total = tar_header.len() as u64 + zeros;
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out
}

/// A tar header for one regular file of `size` bytes.
fn file_header(name: &str, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// A layer of one `size`-byte file of zeros (the tar stream is a header,
/// the zeros, and zero blocks to the end: zeros compress the same).
fn zero_file_bomb(size: u64) -> Vec<u8> {
    // The zeros are followed by the entry's padding and the two end blocks,
    // all zeros too: round up to the MiB the builder works in.
    zero_bomb(&file_header("zeros", size), size + MIB)
}

#[test]
fn the_bomb_builder_makes_a_valid_gzip_of_zeros() {
    let bomb = zero_bomb(&file_header("zeros", 3 * MIB), 4 * MIB);
    let mut all = Vec::new();
    flate2::read::GzDecoder::new(&bomb[..])
        .read_to_end(&mut all)
        .unwrap();
    assert_eq!(all.len() as u64, 512 + 4 * MIB);
    assert!(all[512..].iter().all(|b| *b == 0));
    let mut archive = tar::Archive::new(&all[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.size(), 3 * MIB);
}

#[test]
fn a_gzip_bomb_is_refused_at_the_default_limits_with_nothing_left() {
    let env = Env::new("bomb1g");
    env.import_busybox();
    let work = tempfile::tempdir().unwrap();
    let bomb = zero_file_bomb(1 << 30);
    assert!(bomb.len() < 8 << 20, "the bomb is {} bytes", bomb.len());
    let layout = support::write_layout(
        &work.path().join("bomb"),
        &image(vec![bomb], TAR_GZIP, "bomb:1"),
    );
    refused(&env, &layout, |e| {
        is_limit(e, Limit::LayerUnpackedBytes)
            && e.to_string().contains("--import-layer-unpacked-max")
    });
    // The same bomb as a tarball, the way it arrives on the command line.
    let tarred = work.path().join("bomb.tar");
    support::tar_dir(&layout, &tarred);
    refused(&env, &tarred, |e| is_limit(e, Limit::LayerUnpackedBytes));
    env.finish();
}

#[test]
fn a_stream_past_the_unpacked_limit_is_cut_even_with_honest_headers() {
    let env = Env::with_options("bombpad", |o| {
        o.import_limits.layer_unpacked_bytes_max = 4 * MIB;
    });
    let work = tempfile::tempdir().unwrap();
    // Small files whose headers each fit, adding up past the limit.
    let chunk = vec![0u8; 512 * 1024];
    let names: Vec<String> = (0..16).map(|i| format!("f{i}")).collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| Entry::File(n, &chunk)).collect();
    let many = support::layer_tar(&entries);
    let layout =
        support::write_layout(&work.path().join("many"), &image(vec![many], TAR, "many:1"));
    refused(&env, &layout, |e| is_limit(e, Limit::LayerUnpackedBytes));
    // One tiny file, then 64 MiB of zeros after the end of the archive: no
    // header says so, the meter on the stream does.
    let padded = zero_bomb(&file_header("f", 1), 64 * MIB);
    let layout = support::write_layout(
        &work.path().join("padded"),
        &image(vec![padded], TAR_GZIP, "padded:1"),
    );
    refused(&env, &layout, |e| is_limit(e, Limit::LayerUnpackedBytes));
    env.finish();
}

#[test]
fn the_image_unpacked_limit_counts_every_layer() {
    let env = Env::with_options("imgbytes", |o| {
        o.import_limits.layer_unpacked_bytes_max = 3 * MIB;
        o.import_limits.image_unpacked_bytes_max = 4 * MIB;
    });
    let work = tempfile::tempdir().unwrap();
    let data = vec![1u8; 2 * MIB as usize];
    let first = support::layer_tar(&[Entry::File("a", &data)]);
    let second = support::layer_tar(&[Entry::File("b", &data)]);
    let layout = support::write_layout(
        &work.path().join("two"),
        &image(vec![first, second], TAR, "two:1"),
    );
    refused(&env, &layout, |e| {
        is_limit(e, Limit::ImageUnpackedBytes) && e.to_string().contains("the image")
    });
    env.finish();
}

#[test]
fn compressed_sizes_over_the_limits_are_refused_before_any_copy() {
    let env = Env::with_options("blobsize", |o| {
        o.import_limits.layer_bytes_max = MIB;
        o.import_limits.image_bytes_max = 3 * MIB / 2;
    });
    let work = tempfile::tempdir().unwrap();
    let big = support::layer_tar(&[Entry::File("a", &vec![2u8; 2 * MIB as usize])]);
    let layout = support::write_layout(&work.path().join("big"), &image(vec![big], TAR, "big:1"));
    refused(&env, &layout, |e| is_limit(e, Limit::LayerBytes));
    let half = vec![3u8; (MIB * 3 / 4) as usize];
    let layers = vec![
        support::layer_tar(&[Entry::File("a", &half)]),
        support::layer_tar(&[Entry::File("b", &half)]),
    ];
    let layout = support::write_layout(&work.path().join("sum"), &image(layers, TAR, "sum:1"));
    refused(&env, &layout, |e| is_limit(e, Limit::ImageBytes));
    env.finish();
}

#[test]
fn too_many_files_are_refused() {
    let env = Env::with_options("files", |o| {
        o.import_limits.layer_files_max = 50;
        o.import_limits.image_files_max = 60;
    });
    let work = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
    let entries: Vec<Entry<'_>> = names.iter().map(|n| Entry::File(n, b"")).collect();
    let layout = support::write_layout(
        &work.path().join("flood"),
        &image(vec![support::layer_tar(&entries)], TAR, "flood:1"),
    );
    refused(&env, &layout, |e| {
        is_limit(e, Limit::LayerFiles) && e.to_string().contains("--import-layer-files-max")
    });
    // Two layers of 40: each fits a layer, not the image.
    let first: Vec<Entry<'_>> = names[..40].iter().map(|n| Entry::File(n, b"")).collect();
    let second: Vec<Entry<'_>> = names[40..80].iter().map(|n| Entry::File(n, b"")).collect();
    let layers = vec![support::layer_tar(&first), support::layer_tar(&second)];
    let layout =
        support::write_layout(&work.path().join("flood2"), &image(layers, TAR, "flood2:1"));
    refused(&env, &layout, |e| is_limit(e, Limit::ImageFiles));
    env.finish();
}

/// A layer of one entry written through the tar builder, which stores a
/// name too long for the header as a GNU long-name entry.
fn layer_with_path(path: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, &b"x"[..]).unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn long_paths_and_names_are_refused() {
    let env = Env::with_options("paths", |o| {
        o.import_limits.path_bytes_max = 64;
    });
    let work = tempfile::tempdir().unwrap();
    let deep = "d/".repeat(40) + "f";
    let layout = support::write_layout(
        &work.path().join("deep"),
        &image(vec![layer_with_path(&deep)], TAR, "deep:1"),
    );
    refused(&env, &layout, |e| {
        is_limit(e, Limit::PathBytes) && e.to_string().contains("--import-path-max")
    });
    env.finish();

    // At the defaults: a name longer than a filesystem takes, and a long
    // name entry of 2 MiB the tar reader would otherwise hold in memory.
    let env = Env::new("names");
    let long_name = format!("dir/{}", "n".repeat(300));
    let layout = support::write_layout(
        &work.path().join("name"),
        &image(vec![layer_with_path(&long_name)], TAR, "name:1"),
    );
    refused(&env, &layout, |e| is_limit(e, Limit::NameBytes));
    let huge = "p/".repeat(MIB as usize);
    let layout = support::write_layout(
        &work.path().join("huge"),
        &image(vec![gzip(&layer_with_path(&huge))], TAR_GZIP, "huge:1"),
    );
    refused(&env, &layout, |e| is_limit(e, Limit::EntryMetadataBytes));
    env.finish();
}

/// The uncompressed tar of a layer and its gzip.
fn gzip_layer(entries: &[Entry<'_>]) -> (Vec<u8>, Vec<u8>) {
    let tar = support::layer_tar(entries);
    let gz = gzip(&tar);
    (tar, gz)
}

#[test]
fn a_wrong_diff_id_is_refused_even_for_a_stored_layer() {
    let env = Env::new("diffid");
    let rt = env.rt();
    let work = tempfile::tempdir().unwrap();
    // An uncompressed layer (its diff id is its digest) and a gzip one.
    let plain = support::layer_tar(&[Entry::File("plain", b"plain")]);
    let (tar, gz) = gzip_layer(&[Entry::File("zipped", b"zipped")]);
    let good = support::write_layout(
        &work.path().join("good"),
        &image(vec![plain.clone()], TAR, "good:1"),
    );
    rt.images().import(&good).unwrap();
    let good_gz = support::write_layout_with_diff_ids(
        &work.path().join("goodgz"),
        &image(vec![gz.clone()], TAR_GZIP, "goodgz:1"),
        &[format!("sha256:{}", support::sha256_hex(&tar))],
    );
    rt.images().import(&good_gz).unwrap();

    // The same layers, stored already, under configs that lie about them.
    let wrong = format!("sha256:{}", support::sha256_hex(b"not this layer"));
    let mut forged = image(vec![plain], TAR, "forged:1");
    forged.process = serde_json::json!({"Cmd": ["/bin/false"]});
    let layout = support::write_layout_with_diff_ids(
        &work.path().join("forged"),
        &forged,
        std::slice::from_ref(&wrong),
    );
    refused(
        &env,
        &layout,
        |e| matches!(e, Error::DigestMismatch { what, .. } if what.contains("diff id")),
    );
    let mut forged_gz = image(vec![gz], TAR_GZIP, "forgedgz:1");
    forged_gz.process = serde_json::json!({"Cmd": ["/bin/false"]});
    let layout =
        support::write_layout_with_diff_ids(&work.path().join("forgedgz"), &forged_gz, &[wrong]);
    refused(
        &env,
        &layout,
        |e| matches!(e, Error::DigestMismatch { what, .. } if what.contains("diff id")),
    );
    env.finish();
}

#[test]
fn a_retag_reports_and_adds_the_new_name() {
    let env = Env::new("retag");
    let rt = env.rt();
    let work = tempfile::tempdir().unwrap();
    let layer = support::layer_tar(&[Entry::File("f", b"same")]);
    let control = support::write_layout(
        &work.path().join("control"),
        &image(vec![layer.clone()], TAR, "control:latest"),
    );
    let first = rt.images().import(&control).unwrap().remove(0);
    assert_eq!(first.refs, vec!["control:latest".to_string()]);
    let retag = support::write_layout(
        &work.path().join("retag"),
        &image(vec![layer], TAR, "retag:latest"),
    );
    let second = rt.images().import(&retag).unwrap().remove(0);
    assert_eq!(second.id, first.id, "same content, same image");
    assert_eq!(
        second.refs[0], "retag:latest",
        "reported as {:?}",
        second.refs
    );
    assert_eq!(rt.images().resolve("retag:latest").unwrap(), first.id);
    assert_eq!(rt.images().resolve("control:latest").unwrap(), first.id);
    let listed = rt.images().list().unwrap();
    assert_eq!(listed.len(), 1);
    let mut names = listed[0].refs.clone();
    names.sort();
    assert_eq!(names, ["control:latest", "retag:latest"]);
    env.finish();
}

/// A layer holding one device or FIFO entry.
fn layer_with_node(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o666);
    header.set_device_major(major).unwrap();
    header.set_device_minor(minor).unwrap();
    builder
        .append_data(&mut header, name, std::io::empty())
        .unwrap();
    builder.into_inner().unwrap()
}

#[test]
fn device_nodes_in_layers_are_refused_but_whiteouts_and_fifos_kept() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new("devices");
    let rt = env.rt();
    let work = tempfile::tempdir().unwrap();
    for (name, kind, major, minor) in [
        ("dev/null", tar::EntryType::Char, 1, 3),
        ("tmp/sda", tar::EntryType::Block, 8, 0),
    ] {
        let layout = support::write_layout(
            &work.path().join(name.replace('/', "-")),
            &image(
                vec![layer_with_node(name, kind, major, minor)],
                TAR,
                "dev:1",
            ),
        );
        refused(&env, &layout, |e| {
            matches!(e, Error::DeviceNodeInLayer { entry, .. } if entry == name)
                && e.to_string().contains(&format!("({major}:{minor})"))
        });
    }
    // An overlay-form whiteout (a 0:0 character device) stays one, and a
    // FIFO is a FIFO, not the empty regular file tar would write.
    let layers = vec![
        layer_with_node("gone", tar::EntryType::Char, 0, 0),
        layer_with_node("pipe", tar::EntryType::Fifo, 0, 0),
    ];
    let layout = support::write_layout(&work.path().join("kept"), &image(layers, TAR, "kept:1"));
    let info = rt.images().import(&layout).unwrap().remove(0);
    let layer_dir = |i: usize| rt.root().join("layers").join(info.layers[i].digest.hex());
    let whiteout = fs::symlink_metadata(layer_dir(0).join("gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(std::os::unix::fs::MetadataExt::rdev(&whiteout), 0);
    let fifo = fs::symlink_metadata(layer_dir(1).join("pipe")).unwrap();
    assert!(fifo.file_type().is_fifo(), "{:?}", fifo.file_type());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fifo.permissions()) & 0o777,
        0o666
    );
    env.finish();
}

/// Tars an OCI layout with extra symlink entries beside its files.
fn layout_tar_with_links(layout: &Path, dest: &Path, links: &[(&str, &str)]) -> PathBuf {
    let mut builder = tar::Builder::new(fs::File::create(dest).unwrap());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", layout).unwrap();
    for (name, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, name, target).unwrap();
    }
    builder.into_inner().unwrap().flush().unwrap();
    dest.to_owned()
}

#[test]
fn symlinks_in_the_outer_archive_must_lead_to_its_files() {
    let env = Env::new("outerlink");
    let rt = env.rt();
    let work = tempfile::tempdir().unwrap();
    let layout = support::write_layout(
        &work.path().join("layout"),
        &image(
            vec![support::layer_tar(&[Entry::File("f", b"x")])],
            TAR,
            "links:1",
        ),
    );
    let host = layout_tar_with_links(
        &layout,
        &work.path().join("host.tar"),
        &[("passwd", "/etc/passwd")],
    );
    refused(
        &env,
        &host,
        |e| matches!(e, Error::BadArchive { reason, .. } if reason.contains("passwd") && reason.contains("absolute")),
    );
    let dangling = layout_tar_with_links(
        &layout,
        &work.path().join("dangling.tar"),
        &[("extra", "nowhere")],
    );
    refused(
        &env,
        &dangling,
        |e| matches!(e, Error::BadArchive { reason, .. } if reason.contains("extra") && reason.contains("not a file")),
    );
    let to_dir = layout_tar_with_links(
        &layout,
        &work.path().join("todir.tar"),
        &[("blobdir", "blobs/sha256")],
    );
    refused(
        &env,
        &to_dir,
        |e| matches!(e, Error::BadArchive { reason, .. } if reason.contains("blobdir")),
    );
    // A relative link to a file of the archive (how docker save shares a
    // layer) is fine.
    let fine = layout_tar_with_links(
        &layout,
        &work.path().join("fine.tar"),
        &[("alias", "oci-layout")],
    );
    rt.images().import(&fine).unwrap();
    env.finish();
}

#[test]
fn the_fuzz_entry_point_refuses_garbage_and_imports_an_image() {
    let work = tempfile::tempdir().unwrap();
    let fuzzer = runtime::ImportFuzzer::new(work.path()).unwrap();
    for garbage in [
        &b""[..],
        b"\x1f\x8b\x08garbage",
        &[0u8; 1024][..],
        &[7u8; 3000][..],
    ] {
        assert!(fuzzer.import(garbage).is_err());
    }
    let layout = support::write_layout(
        &work.path().join("layout"),
        &image(
            vec![support::layer_tar(&[Entry::File("f", b"x")])],
            TAR,
            "fuzz:1",
        ),
    );
    let tarred = work.path().join("layout.tar");
    support::tar_dir(&layout, &tarred);
    let bytes = fs::read(&tarred).unwrap();
    // Twice: each call starts from an empty store.
    for _ in 0..2 {
        let images = fuzzer.import(&bytes).unwrap();
        assert_eq!(images[0].refs, vec!["fuzz:1".to_string()]);
    }
    // The fuzzer's own limits refuse a bomb quickly.
    let bomb = support::write_layout(
        &work.path().join("bomb"),
        &image(vec![zero_file_bomb(256 * MIB)], TAR_GZIP, "bomb:1"),
    );
    let bomb_tar = work.path().join("bomb.tar");
    support::tar_dir(&bomb, &bomb_tar);
    let err = fuzzer.import(&fs::read(&bomb_tar).unwrap()).unwrap_err();
    assert!(matches!(err, Error::ImportLimit { .. }), "{err}");
    let _: ImportLimits = runtime::ImportFuzzer::limits();
}
