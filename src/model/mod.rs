//! (being written: the service spec and its validation)
