//! The GitHub REST client, the adapter of the `GitHub` port (build-dispatch posts commit
//! statuses, deploy-promotion creates deployments): endpoints in `client`, authentication in
//! `auth`, requests and answer classification in `transport`; a signed-in person's own calls
//! (the status page's sign-in) in `person`.

mod auth;
pub mod client;
pub mod deliveries;
pub mod person;
mod transport;

#[cfg(test)]
mod tests;
