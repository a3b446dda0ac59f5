//! The network of a one-voter Raft that never talks to anyone: every RPC
//! fails. For a store exercised under a real openraft node without sockets
//! (the store's tests and benchmark).

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

use crate::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use crate::{NodeId, PeerNode, TypeConfig};

/// A network with no peers.
pub struct NoNetwork;

fn nobody() -> std::io::Error {
    std::io::Error::other("a one-node cluster has no peers")
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: NodeId, _node: &PeerNode) -> NoNetwork {
        NoNetwork
    }
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        Err(RPCError::Network(NetworkError::new(&nobody())))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(&nobody())))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest,
        _option: RPCOption,
    ) -> Result<VoteResponse, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        Err(RPCError::Network(NetworkError::new(&nobody())))
    }
}
