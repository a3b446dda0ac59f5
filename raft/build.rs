//! Debian's librocksdb.a was built with these compression libraries; a static
//! RocksDB needs them linked statically too (see .cargo/config.toml).
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if std::env::var("ROCKSDB_STATIC").is_ok() {
        let dir = std::env::var("ROCKSDB_LIB_DIR")
            .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu".to_string());
        println!("cargo:rustc-link-search=native={dir}");
        for lib in ["zstd", "lz4", "snappy", "z", "bz2"] {
            println!("cargo:rustc-link-lib=static={lib}");
        }
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
