//! (being written: the bin-packing scheduler, a pure function)
