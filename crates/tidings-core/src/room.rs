use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of a room: a group of sockets of one namespace that a broadcast can address.
///
/// Cheap to clone (a shared string): room names are copied into every membership index.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Room(Arc<str>);

impl Room {
    /// The room's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Room {
    fn from(name: &str) -> Self {
        Room(Arc::from(name))
    }
}

impl From<String> for Room {
    fn from(name: String) -> Self {
        Room(Arc::from(name))
    }
}

impl From<&String> for Room {
    fn from(name: &String) -> Self {
        Room(Arc::from(name.as_str()))
    }
}

impl Borrow<str> for Room {
    fn borrow(&self) -> &str {
        &self.0
    }
}

// Name newtypes (`Room`, `Topic`) each print themselves the same way; kept per type so that
// each stays a plain, greppable impl.
impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Room({:?})", &*self.0)
    }
}

impl serde::Serialize for Room {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}
