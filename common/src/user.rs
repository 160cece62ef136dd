//! Who this process runs as.

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_proc_self() {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the effective uid: an independent reading of the same fact.
        let owner = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(super::is_root(), owner == 0);
    }
}
