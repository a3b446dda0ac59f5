use super::*;

#[test]
fn each_cluster_id_gets_its_own_vni_in_range() {
    let ids: Vec<String> = (0u64..2000)
        .map(|i| hex::encode(i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()))
        .collect();
    let vnis: std::collections::BTreeSet<u32> = ids.iter().map(|id| vni_for_cluster(id)).collect();
    // 2,000 ids over 16.7 M values: a collision or two at most.
    assert!(vnis.len() >= 1998, "{} distinct VNIs", vnis.len());
    for vni in &vnis {
        assert!((1..=VXLAN_VNI_MAX).contains(vni), "{vni}");
        assert_ne!(*vni, DEFAULT_VXLAN_VNI);
    }
}

#[test]
fn the_vni_of_a_cluster_id_never_changes() {
    // Recorded once at init; still, a version that derived another value
    // would surprise whoever compares it with `ip -d link`.
    assert_eq!(
        vni_for_cluster("0123456789abcdef"),
        vni_for_cluster("0123456789abcdef")
    );
    assert_ne!(
        vni_for_cluster("0123456789abcdef"),
        vni_for_cluster("0123456789abcdee")
    );
}
