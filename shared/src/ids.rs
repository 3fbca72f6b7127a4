//! Ids as types: a delivery id, a build id, a commit sha and a deploy target key each travel as
//! their own type, so that one is never passed where another is meant. On the wire they are
//! plain JSON strings.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

id_type!(
    /// `X-GitHub-Delivery`: one webhook delivery, and the correlation id from webhook to chat.
    DeliveryId
);
id_type!(
    /// A CodeBuild build id (`project:uuid`).
    BuildId
);
id_type!(
    /// A commit's full SHA.
    Sha
);
id_type!(
    /// A deploy target's key, as the config names targets (`heroku:pax-user`): one FIFO group
    /// and one live record per target.
    TargetKey
);

impl Sha {
    /// The seven characters people read.
    pub fn short(&self) -> &str {
        crate::messages::short_sha(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let sha = Sha::new("0123456789abcdef");
        assert_eq!(serde_json::to_string(&sha).unwrap(), "\"0123456789abcdef\"");
        let back: Sha = serde_json::from_str("\"0123456789abcdef\"").unwrap();
        assert_eq!(back, sha);
        assert_eq!(sha.short(), "0123456");
        assert_eq!(format!("{sha}"), "0123456789abcdef");
    }
}
