use super::*;

#[test]
fn parses_displays_and_refuses_host_bits() {
    let cidr: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
    assert_eq!(cidr.to_string(), "10.88.0.0/16");
    assert_eq!(
        "10.88.1.0/16".parse::<Ipv4Cidr>().unwrap_err().to_string(),
        "\"10.88.1.0/16\" has host bits set: did you mean 10.88.0.0/16?"
    );
    for bad in ["10.88.0.0", "10.88.0.0/33", "nope/8", "10.88.0.0/x"] {
        assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
    }
    assert_eq!(
        serde_json::to_string(&cidr).unwrap(),
        "\"10.88.0.0/16\"",
        "stored as text"
    );
}

#[test]
fn subblocks_count_index_and_contain() {
    let cidr: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
    assert_eq!(cidr.subblock_count(24), Some(256));
    assert_eq!(cidr.subblock_count(16), None);
    assert_eq!(cidr.subblock(24, 3).unwrap().to_string(), "10.88.3.0/24");
    assert_eq!(cidr.subblock(24, 256), None);
    let block: Ipv4Cidr = "10.88.255.0/24".parse().unwrap();
    assert_eq!(cidr.subblock_index(&block), Some(255));
    assert!(cidr.contains(&block));
    assert!(!block.contains(&cidr));
    assert!(block.overlaps(&cidr));
    let outside: Ipv4Cidr = "10.89.0.0/24".parse().unwrap();
    assert_eq!(cidr.subblock_index(&outside), None);
    assert_eq!(
        "0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().subblock_count(1),
        Some(2)
    );
}
