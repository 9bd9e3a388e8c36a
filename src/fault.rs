//! Who must act on an error: the person who wrote the command or the pipeline file, the data,
//! an external service, or the developers (a bug). Every library error enum says which, through
//! [`Blame`]; `fdp` prints it beside the message and exits with the matching status, so a script
//! or a supervisor can tell "fix your file" from "retry later" from "report a bug".

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The command line or the pipeline file: fix it and run again.
    Input,
    /// The data read (a file's rows, a stream message): fix or replace it; the rest of the run
    /// quarantines such rows instead of stopping, so this is a whole input that is unusable.
    Data,
    /// A service the run depends on (PostgreSQL, Redis, a provider, a broker) refused or did not
    /// answer: retrying later may succeed.
    Service,
    /// A broken invariant of this program: report it.
    Bug,
}

impl Fault {
    /// The process exit status for this fault: 2 input, 3 data, 4 service, 70 bug (`EX_SOFTWARE`).
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input => 2,
            Fault::Data => 3,
            Fault::Service => 4,
            Fault::Bug => 70,
        }
    }

    /// A short label for messages: `input`, `data`, `service`, `bug`.
    pub fn label(self) -> &'static str {
        match self {
            Fault::Input => "input",
            Fault::Data => "data",
            Fault::Service => "service",
            Fault::Bug => "bug",
        }
    }
}

/// An error that knows who is at fault.
pub trait Blame {
    /// Who must act.
    fn fault(&self) -> Fault;
}

impl Blame for std::io::Error {
    /// A path that does not exist or may not be read was given by the user; anything else the
    /// machine did (a full disk, a broken pipe) is a service of sorts: retrying may help.
    fn fault(&self) -> Fault {
        use std::io::ErrorKind::*;
        match self.kind() {
            NotFound | PermissionDenied | InvalidInput | AlreadyExists | IsADirectory
            | NotADirectory => Fault::Input,
            InvalidData | UnexpectedEof => Fault::Data,
            _ => Fault::Service,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_not_the_generic_failure() {
        let all = [Fault::Input, Fault::Data, Fault::Service, Fault::Bug];
        let mut codes: Vec<u8> = all.iter().map(|f| f.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 4);
        assert!(!codes.contains(&1) && !codes.contains(&0));
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(missing.fault(), Fault::Input);
    }
}
