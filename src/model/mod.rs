//! The cluster's objects as users write them. For now: the service spec
//! ([`service`]) and the CPU and memory quantities it uses ([`quantity`]).
//!
//! Pure: no IO, no clock, no tokio. Specs are parsed and validated here;
//! turning one into the runtime's `ContainerSpec` is the node agent's job.

pub mod limits;
mod locate;
mod prescan;
pub mod quantity;
pub mod service;

pub use limits::{DocumentLimit, SpecLimits};
pub use quantity::{CpuMillis, MemoryBytes, QuantityError};
pub use service::{
    check_references, parse_service, parse_service_document, validate, Backoff, Constraint,
    ConstraintOperator, EffectiveProbes, EnvFrom, FailureAction, FailureRatio, HealthCheck,
    HttpProbe, HttpScheme, Location, Metadata, NetworkMode, ObjectFile, OnChange, Placement, Port,
    Probe, ProbeAction, ProbeCheck, Probes, Protocol, Publish, ResourceList, Resources,
    RestartCondition, RestartPolicy, RollbackPolicy, ServiceBody, ServiceSpec, SessionAffinity,
    SpecError, Spread, TcpProbe, UpdateOrder, UpdatePolicy, Volume, VolumeMount, VolumeType,
    API_VERSION, KIND_SERVICE, REPLICAS_MAX, REVISION_HISTORY_DEFAULT, SPEC_BYTES_MAX,
};
