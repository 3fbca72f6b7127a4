//! The GitHub REST client, the adapter of the `GitHub` port (build-dispatch posts commit
//! statuses, deploy-promotion creates deployments): endpoints in `client`, authentication in
//! `auth`, requests and answer classification in `transport`. `client`'s `Rest::get` also serves
//! the status page's calls as a signed-in person (they live in that function, its only user).

mod auth;
pub mod client;
pub mod deliveries;
mod transport;

#[cfg(test)]
mod tests;
