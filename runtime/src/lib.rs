//! edgectl's node runtime: images and containers on one node (being written).
