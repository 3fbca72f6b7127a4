//! The GitHub REST client, the adapter of the `GitHub` port (build-dispatch posts commit
//! statuses, deploy-promotion creates deployments): endpoints in `client`, authentication in
//! `auth`, requests and answer classification in `transport`.

mod auth;
pub mod client;
pub mod deliveries;
mod transport;

#[cfg(test)]
mod tests;
