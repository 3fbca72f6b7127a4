//! The GitHub REST client, the adapter of the `GitHub` port (build-dispatch posts commit
//! statuses, deploy-promotion creates deployments).

pub mod client;
