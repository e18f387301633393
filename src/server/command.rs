//! The command vocabulary: request arguments in, a typed [`Command`] or a
//! Redis-worded [`CommandError`] out.
//!
//! Session cores call [`Command::parse`] on every request the RESP parser
//! returns, then execute the command; nothing here touches data. Commands
//! borrow their keys and values from the request ([`Args`]), so parsing
//! allocates nothing on the data path (only errors format strings). Queued
//! MULTI commands are kept as [`OwnedArgs`](super::resp::OwnedArgs) and
//! parsed again at EXEC.
//!
//! [`COMMAND_TABLE`] is the single source for names, arities (Redis's
//! convention: `n` exactly, `-n` at least `n`, command name included), flags
//! and key positions; the parser checks arity against it and
//! [`write_command_reply`] answers `COMMAND`, `COMMAND COUNT|INFO|DOCS` from
//! it, which is what redis-cli and client libraries ask at start.
//!
//! Error texts are Redis 7's, byte for byte, so clients and tools that match
//! on them keep working; where Redis has no equivalent the text says so
//! plainly (`ERR expiration is not supported`).

use thiserror::Error;

use super::resp::{
    parse_i64, write_array_header, write_bulk, write_integer, write_map_header, write_null,
    write_set_header, write_simple, Args, Protocol,
};

/// Longest command-name and argument excerpt quoted in an unknown-command
/// error, in bytes (Redis's `%.128s`).
const ERROR_EXCERPT_BYTES_MAX: usize = 128;

/// `SCAN`'s `COUNT` when none is given (Redis's default).
pub const SCAN_COUNT_DEFAULT: usize = 10;

/// A command error; Display is the error reply without the leading `-`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{subcommand}'. Try {command} HELP.")]
    UnknownSubcommand {
        command: &'static str,
        subcommand: String,
    },
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity { command: &'static str },
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR increment or decrement would overflow")]
    IncrementOverflow,
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    #[error("ERR expiration is not supported")]
    ExpirationUnsupported,
    #[error("ERR invalid cursor")]
    InvalidCursor,
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    #[error("NOPROTO unsupported protocol version")]
    UnsupportedProtocol,
    #[error("ERR Syntax error in HELLO option '{option}'")]
    HelloOption { option: String },
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("ERR timeout is not an integer or out of range")]
    TimeoutNotInteger,
    #[error("ERR timeout is negative")]
    TimeoutNegative,
    /// Redis's wording for a negative count or position
    /// (`getPositiveLongFromObjectOrReply`); zero is allowed.
    #[error("ERR value is out of range, must be positive")]
    ValueNegative,
    #[error("ERR No shutdown in progress.")]
    NoShutdownInProgress,

    // Raised by the session, not by the parser; worded here so that all
    // client-visible texts live in one place.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error(
        "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
         HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
         select the RESP protocol version at the same time"
    )]
    HelloNoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?"
    )]
    AuthNotConfigured,
    #[error("ERR MULTI calls can not be nested")]
    NestedMulti,
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    #[error("ERR Command not allowed inside a transaction")]
    NotAllowedInMulti,
    #[error("READONLY You can't write against a read only replica. The primary is {primary}.")]
    ReadOnly { primary: String },
    #[error("ERR WAIT cannot be used with replica instances.")]
    WaitOnStandby,
    /// `WAITLSN` and `REPL WAITLSN` ran out of time; `applied` is this
    /// node's applied LSN at that moment.
    #[error("TIMEOUT applied {applied}")]
    WaitLsnTimeout { applied: u64 },
}

/// SET's existence condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    #[default]
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// What `COMMAND` was asked; answered by [`write_command_reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandQuery<'a> {
    /// Plain `COMMAND`: info on every command.
    List,
    Count,
    /// `COMMAND INFO [name ...]`; no names means all.
    Info {
        names: Args<'a>,
    },
    /// `COMMAND DOCS [name ...]`; no names means all.
    Docs {
        names: Args<'a>,
    },
}

/// A parsed request. Keys and values borrow from the request's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Get {
        key: &'a [u8],
    },
    /// `SET key value [NX|XX] [GET] [KEEPTTL]`; `get` asks for the old value.
    Set {
        key: &'a [u8],
        value: &'a [u8],
        condition: SetCondition,
        get: bool,
    },
    Del {
        keys: Args<'a>,
    },
    Exists {
        keys: Args<'a>,
    },
    /// INCR, DECR, INCRBY and DECRBY; apply with [`checked_incr`].
    IncrBy {
        key: &'a [u8],
        delta: i64,
    },
    MGet {
        keys: Args<'a>,
    },
    /// `MSET k1 v1 k2 v2 ...`; iterate with [`Args::pairs`].
    MSet {
        pairs: Args<'a>,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`. `count >= 1`;
    /// the executor caps it. A `pattern` of `*` should skip matching, as
    /// Redis does (see [`super::glob`]).
    Scan {
        cursor: u64,
        pattern: Option<&'a [u8]>,
        count: usize,
        type_name: Option<&'a [u8]>,
    },
    DbSize,
    Ping {
        message: Option<&'a [u8]>,
    },
    Echo {
        message: &'a [u8],
    },
    /// `AUTH [username] password`.
    Auth {
        username: Option<&'a [u8]>,
        password: &'a [u8],
    },
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`; a
    /// `client_name` has been validated.
    Hello {
        protocol: Option<Protocol>,
        auth: Option<(&'a [u8], &'a [u8])>,
        client_name: Option<&'a [u8]>,
    },
    /// `INFO [section ...]`; no sections means the default set.
    Info {
        sections: Args<'a>,
    },
    Role,
    /// `CLIENT SETNAME name`; validated, empty clears the name.
    ClientSetName {
        name: &'a [u8],
    },
    ClientGetName,
    /// `CLIENT SYNC level|DEFAULT`: this connection's `synchronous_commit`.
    ClientSync {
        level: &'a [u8],
    },
    ClientId,
    ClientInfo,
    Command(CommandQuery<'a>),
    /// `CONFIG GET pattern [pattern ...]`; match names with
    /// [`glob_match_nocase`](super::glob::glob_match_nocase).
    ConfigGet {
        patterns: Args<'a>,
    },
    /// `CONFIG SET name value [name value ...]`.
    ConfigSet {
        pairs: Args<'a>,
    },
    Multi,
    Exec,
    Discard,
    Quit,
    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`; the options change nothing.
    Shutdown,
    /// `WAIT numreplicas timeout`; `timeout_ms == 0` waits forever.
    Wait {
        replicas: i64,
        timeout_ms: u64,
    },
    /// `SELECT 0`, the only database.
    Select,
    /// `LASTLSN`: the commit LSN of this connection's last write (0 if
    /// none), for `WAITLSN` on another node (read-your-writes).
    LastLsn,
    /// `WAITLSN lsn timeout_ms`: until this node applied `lsn` (a standby:
    /// redo's applied LSN; a primary: its flushed WAL); `timeout_ms == 0`
    /// waits without limit.
    WaitLsn {
        lsn: u64,
        timeout_ms: u64,
    },
    /// `REPL ...`: role changes for the ctl tool (promote, fence, demote,
    /// follow, wait for an LSN).
    Repl(ReplCommand<'a>),
}

/// The `REPL` subcommands (tandem's own; `tandemctl` drives them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplCommand<'a> {
    /// `REPL PROMOTE [reason]`: standby (or pending primary) to primary.
    Promote { reason: Option<&'a [u8]> },
    /// `REPL FENCE`: stop taking writes (switchover); replies the WAL end.
    Fence,
    /// `REPL UNFENCE`: take writes again after a switchover gave up.
    Unfence,
    /// `REPL DEMOTE host:port`: primary to standby of that replication address.
    Demote { upstream: &'a [u8] },
    /// `REPL FOLLOW host:port`: standby streams from that replication address.
    Follow { upstream: &'a [u8] },
    /// `REPL WAITLSN lsn timeout_ms`: until the applied LSN reaches `lsn`.
    WaitLsn { lsn: u64, timeout_ms: u64 },
}

/// Top-level commands, in [`COMMAND_TABLE`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    Get,
    Set,
    Del,
    Exists,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    MGet,
    MSet,
    Scan,
    DbSize,
    Ping,
    Echo,
    Auth,
    Hello,
    Info,
    Role,
    Client,
    Command,
    Config,
    Multi,
    Exec,
    Discard,
    Quit,
    Shutdown,
    Wait,
    Select,
    Repl,
    LastLsn,
    WaitLsn,
}

/// Longest command name, in bytes.
const NAME_BYTES_MAX: usize = 8;

impl CommandKind {
    /// The command named `name`, any case.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        let mut lower = [0u8; NAME_BYTES_MAX];
        let lower = lower.get_mut(..name.len())?;
        for (to, from) in lower.iter_mut().zip(name) {
            *to = from.to_ascii_lowercase();
        }
        Some(match &*lower {
            b"get" => Self::Get,
            b"set" => Self::Set,
            b"del" => Self::Del,
            b"exists" => Self::Exists,
            b"incr" => Self::Incr,
            b"decr" => Self::Decr,
            b"incrby" => Self::IncrBy,
            b"decrby" => Self::DecrBy,
            b"mget" => Self::MGet,
            b"mset" => Self::MSet,
            b"scan" => Self::Scan,
            b"dbsize" => Self::DbSize,
            b"ping" => Self::Ping,
            b"echo" => Self::Echo,
            b"auth" => Self::Auth,
            b"hello" => Self::Hello,
            b"info" => Self::Info,
            b"role" => Self::Role,
            b"client" => Self::Client,
            b"repl" => Self::Repl,
            b"command" => Self::Command,
            b"config" => Self::Config,
            b"multi" => Self::Multi,
            b"exec" => Self::Exec,
            b"discard" => Self::Discard,
            b"quit" => Self::Quit,
            b"shutdown" => Self::Shutdown,
            b"wait" => Self::Wait,
            b"select" => Self::Select,
            b"lastlsn" => Self::LastLsn,
            b"waitlsn" => Self::WaitLsn,
            _ => return None,
        })
    }

    pub fn spec(self) -> &'static CommandSpec {
        &COMMAND_TABLE[self as usize]
    }
}

/// A command's entry in [`COMMAND_TABLE`], shaped like Redis's command table.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase; subcommands as `container|sub`, as Redis names them.
    pub name: &'static str,
    /// `n`: exactly n arguments; `-n`: at least n (the name included).
    pub arity: i64,
    pub flags: &'static [&'static str],
    /// Key positions (first, last, step) for `COMMAND INFO`; `last` -1 means
    /// the last argument, all zero means no keys.
    pub first_key: i64,
    pub last_key: i64,
    pub key_step: i64,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// Whether a request of `len` arguments (the name included) fits.
    pub fn accepts_arity(&self, len: usize) -> bool {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            len == self.arity
        } else {
            len >= -self.arity
        }
    }

    /// The subcommand named `name` (without `container|`), any case.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        self.subcommands.iter().find(|sub| {
            sub.name
                .split_once('|')
                .is_some_and(|(_, short)| short.as_bytes().eq_ignore_ascii_case(name))
        })
    }
}

const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const CONNECTION: &[&str] = &[
    "noscript",
    "loading",
    "stale",
    "fast",
    "no_auth",
    "allow_busy",
];
const SESSION: &[&str] = &["noscript", "loading", "stale"];
const TRANSACTION: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
        group,
        since,
        summary,
        subcommands: &[],
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "client|sync",
        3,
        SESSION,
        NO_KEYS,
        "connection",
        "tandem",
        "Sets synchronous_commit for this connection (a level, or DEFAULT for the node's).",
    ),
    spec(
        "client|setname",
        3,
        SESSION,
        NO_KEYS,
        "connection",
        "2.6.9",
        "Sets the connection name.",
    ),
    spec(
        "client|getname",
        2,
        SESSION,
        NO_KEYS,
        "connection",
        "2.6.9",
        "Returns the name of the connection.",
    ),
    spec(
        "client|id",
        2,
        SESSION,
        NO_KEYS,
        "connection",
        "5.0.0",
        "Returns the unique client ID of the connection.",
    ),
    spec(
        "client|info",
        2,
        SESSION,
        NO_KEYS,
        "connection",
        "6.2.0",
        "Returns information about the connection.",
    ),
];

const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "command|count",
        2,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "2.8.13",
        "Returns a count of commands.",
    ),
    spec(
        "command|docs",
        -2,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "7.0.0",
        "Returns documentary information about one, multiple or all commands.",
    ),
    spec(
        "command|info",
        -2,
        &["loading", "stale"],
        NO_KEYS,
        "server",
        "2.8.13",
        "Returns information about one, multiple or all commands.",
    ),
];

const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "config|get",
        -3,
        ADMIN,
        NO_KEYS,
        "server",
        "2.0.0",
        "Returns the effective values of configuration parameters.",
    ),
    spec(
        "config|set",
        -4,
        ADMIN,
        NO_KEYS,
        "server",
        "2.0.0",
        "Sets configuration parameters in-flight.",
    ),
];

const fn container(spec: CommandSpec, subcommands: &'static [CommandSpec]) -> CommandSpec {
    CommandSpec {
        subcommands,
        ..spec
    }
}

/// Every command, indexed by [`CommandKind`].
#[rustfmt::skip]
pub static COMMAND_TABLE: [CommandSpec; 31] = [
    spec("get", 2, READ_FAST, ONE_KEY, "string", "1.0.0", "Returns the string value of a key."),
    spec("set", -3, &["write", "denyoom"], ONE_KEY, "string", "1.0.0", "Sets the string value of a key. The key is created if it doesn't exist."),
    spec("del", -2, &["write"], ALL_KEYS, "generic", "1.0.0", "Deletes one or more keys."),
    spec("exists", -2, READ_FAST, ALL_KEYS, "generic", "1.0.0", "Determines whether one or more keys exist."),
    spec("incr", 2, WRITE_FAST, ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("decr", 2, WRITE_FAST, ONE_KEY, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("incrby", 3, WRITE_FAST, ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("decrby", 3, WRITE_FAST, ONE_KEY, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec("mget", -2, READ_FAST, ALL_KEYS, "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2), "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    spec("scan", -2, &["readonly"], NO_KEYS, "generic", "2.8.0", "Iterates over the key names in the database."),
    spec("dbsize", 1, READ_FAST, NO_KEYS, "server", "1.0.0", "Returns the number of keys in the database."),
    spec("ping", -1, &["fast"], NO_KEYS, "connection", "1.0.0", "Returns the server's liveliness response."),
    spec("echo", 2, &["fast"], NO_KEYS, "connection", "1.0.0", "Returns the given string."),
    spec("auth", -2, CONNECTION, NO_KEYS, "connection", "1.0.0", "Authenticates the connection."),
    spec("hello", -1, CONNECTION, NO_KEYS, "connection", "6.0.0", "Handshakes with the server."),
    spec("info", -1, &["loading", "stale"], NO_KEYS, "server", "1.0.0", "Returns information and statistics about the server."),
    spec("role", 1, &["noscript", "loading", "stale", "fast"], NO_KEYS, "server", "2.8.12", "Returns the replication role."),
    container(spec("client", -2, &[], NO_KEYS, "connection", "2.4.0", "A container for client connection commands."), CLIENT_SUBCOMMANDS),
    container(spec("command", -1, &["loading", "stale"], NO_KEYS, "server", "2.8.13", "Returns detailed information about all commands."), COMMAND_SUBCOMMANDS),
    container(spec("config", -2, &[], NO_KEYS, "server", "2.0.0", "A container for server configuration commands."), CONFIG_SUBCOMMANDS),
    spec("multi", 1, TRANSACTION, NO_KEYS, "transactions", "1.2.0", "Starts a transaction."),
    spec("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS, "transactions", "1.2.0", "Executes all commands in a transaction."),
    spec("discard", 1, TRANSACTION, NO_KEYS, "transactions", "2.0.0", "Discards a transaction."),
    spec("quit", -1, CONNECTION, NO_KEYS, "connection", "1.0.0", "Closes the connection."),
    spec("shutdown", -1, &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], NO_KEYS, "server", "1.0.0", "Stops the node."),
    spec("wait", 3, &["noscript"], NO_KEYS, "generic", "3.0.0", "Blocks until the preceding writes of the connection are acknowledged by standbys."),
    spec("select", 2, &["loading", "stale", "fast"], NO_KEYS, "connection", "2.0.0", "Changes the selected database (only 0 exists)."),
    container(spec("repl", -2, &["admin", "noscript", "no_multi"], NO_KEYS, "server", "tandem", "A container for role changes (switchover, failover) driven by tandemctl."), REPL_SUBCOMMANDS),
    spec("lastlsn", 1, &["fast", "loading", "stale"], NO_KEYS, "connection", "tandem", "Returns the commit LSN of the connection's last write (0 if none), for WAITLSN on another node."),
    spec("waitlsn", 3, &["noscript", "no_multi", "loading", "stale"], NO_KEYS, "connection", "tandem", "Blocks until this node applied the given LSN (timeout in ms, 0 = no limit); replies the applied LSN or TIMEOUT applied <lsn>."),
];

const _: () = assert!(COMMAND_TABLE.len() == CommandKind::WaitLsn as usize + 1);

const REPL_ADMIN: &[&str] = &["admin", "noscript", "no_multi"];

const REPL_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "repl|promote",
        -2,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Promotes this standby (or pending primary) to primary on a new timeline.",
    ),
    spec(
        "repl|fence",
        2,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Stops taking writes for a switchover; replies the end of the WAL.",
    ),
    spec(
        "repl|unfence",
        2,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Takes writes again after a switchover gave up.",
    ),
    spec(
        "repl|demote",
        3,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Turns this primary into a standby of the given replication address.",
    ),
    spec(
        "repl|follow",
        3,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Makes this standby stream from the given replication address.",
    ),
    spec(
        "repl|waitlsn",
        4,
        REPL_ADMIN,
        NO_KEYS,
        "server",
        "tandem",
        "Waits until the applied LSN reaches the given LSN (timeout in ms, 0 = no limit).",
    ),
];

/// The command or subcommand spec named `name` (`get`, `client|setname`),
/// any case.
pub fn lookup_spec(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        None => COMMAND_TABLE
            .iter()
            .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name)),
        Some(bar) => {
            let container = name.get(..bar).and_then(CommandKind::from_name)?;
            container
                .spec()
                .subcommand(name.get(bar + 1..).unwrap_or_default())
        }
    }
}

fn lossy(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes.get(..max).unwrap_or(bytes)).into_owned()
}

/// Redis's unknown-command error: the name and up to ~128 bytes of quoted
/// arguments, each followed by a blank.
fn unknown_command(args: Args<'_>) -> CommandError {
    let name = lossy(args.get(0).unwrap_or_default(), ERROR_EXCERPT_BYTES_MAX);
    let mut quoted = String::new();
    for arg in args.skip(1) {
        let room = ERROR_EXCERPT_BYTES_MAX.saturating_sub(quoted.len());
        if room == 0 {
            break;
        }
        quoted.push('\'');
        quoted.push_str(&lossy(arg, room));
        quoted.push_str("' ");
    }
    CommandError::UnknownCommand { name, args: quoted }
}

fn parse_integer(bytes: &[u8]) -> Result<i64, CommandError> {
    parse_i64(bytes).ok_or(CommandError::NotInteger)
}

/// Redis's `string2ull`: a non-negative `i64`, or plain digits up to `u64::MAX`.
fn parse_cursor(bytes: &[u8]) -> Result<u64, CommandError> {
    if let Some(value) = parse_i64(bytes) {
        return u64::try_from(value).map_err(|_| CommandError::InvalidCursor);
    }
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(CommandError::InvalidCursor);
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(CommandError::InvalidCursor)
}

/// Redis's `validateClientName`: printable ASCII without blanks.
fn validate_client_name(name: &[u8]) -> Result<&[u8], CommandError> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(name)
    } else {
        Err(CommandError::InvalidClientName)
    }
}

fn is_option(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

impl<'a> Command<'a> {
    /// Parses one request (command name first).
    pub fn parse(args: Args<'a>) -> Result<Self, CommandError> {
        let name = args.get(0).unwrap_or_default();
        let kind = CommandKind::from_name(name).ok_or_else(|| unknown_command(args))?;
        let mut spec = kind.spec();
        if !spec.subcommands.is_empty() {
            if let Some(sub) = args.get(1) {
                spec = spec
                    .subcommand(sub)
                    .ok_or_else(|| CommandError::UnknownSubcommand {
                        command: container_display_name(kind),
                        subcommand: lossy(sub, ERROR_EXCERPT_BYTES_MAX),
                    })?;
            }
        }
        if !spec.accepts_arity(args.len()) {
            return Err(CommandError::WrongArity { command: spec.name });
        }
        // Arity is checked: the arguments read below exist.
        let arg = |index: usize| args.get(index).unwrap_or_default();
        let wrong_arity = || CommandError::WrongArity { command: spec.name };
        Ok(match kind {
            CommandKind::Get => Command::Get { key: arg(1) },
            CommandKind::Set => parse_set(args)?,
            CommandKind::Del => Command::Del { keys: args.skip(1) },
            CommandKind::Exists => Command::Exists { keys: args.skip(1) },
            CommandKind::Incr => Command::IncrBy {
                key: arg(1),
                delta: 1,
            },
            CommandKind::Decr => Command::IncrBy {
                key: arg(1),
                delta: -1,
            },
            CommandKind::IncrBy => Command::IncrBy {
                key: arg(1),
                delta: parse_integer(arg(2))?,
            },
            CommandKind::DecrBy => {
                let delta = parse_integer(arg(2))?;
                let delta = delta.checked_neg().ok_or(CommandError::DecrementOverflow)?;
                Command::IncrBy { key: arg(1), delta }
            }
            CommandKind::MGet => Command::MGet { keys: args.skip(1) },
            CommandKind::MSet if args.len().is_multiple_of(2) => return Err(wrong_arity()),
            CommandKind::MSet => Command::MSet {
                pairs: args.skip(1),
            },
            CommandKind::Scan => parse_scan(args)?,
            CommandKind::DbSize => Command::DbSize,
            CommandKind::Ping if args.len() > 2 => return Err(wrong_arity()),
            CommandKind::Ping => Command::Ping {
                message: args.get(1),
            },
            CommandKind::Echo => Command::Echo { message: arg(1) },
            CommandKind::Auth => match args.len() {
                2 => Command::Auth {
                    username: None,
                    password: arg(1),
                },
                3 => Command::Auth {
                    username: Some(arg(1)),
                    password: arg(2),
                },
                _ => return Err(CommandError::Syntax),
            },
            CommandKind::Hello => parse_hello(args)?,
            CommandKind::Info => Command::Info {
                sections: args.skip(1),
            },
            CommandKind::Role => Command::Role,
            CommandKind::Client => match spec.name {
                "client|setname" => Command::ClientSetName {
                    name: validate_client_name(arg(2))?,
                },
                "client|getname" => Command::ClientGetName,
                "client|sync" => Command::ClientSync { level: arg(2) },
                "client|id" => Command::ClientId,
                _ => Command::ClientInfo,
            },
            CommandKind::Command => Command::Command(match spec.name {
                "command|count" => CommandQuery::Count,
                "command|docs" => CommandQuery::Docs {
                    names: args.skip(2),
                },
                "command|info" => CommandQuery::Info {
                    names: args.skip(2),
                },
                _ => CommandQuery::List,
            }),
            CommandKind::Config => match spec.name {
                "config|get" => Command::ConfigGet {
                    patterns: args.skip(2),
                },
                _ if !args.len().is_multiple_of(2) => return Err(wrong_arity()),
                _ => Command::ConfigSet {
                    pairs: args.skip(2),
                },
            },
            CommandKind::Multi => Command::Multi,
            CommandKind::Exec => Command::Exec,
            CommandKind::Discard => Command::Discard,
            CommandKind::Quit => Command::Quit,
            CommandKind::Shutdown => parse_shutdown(args)?,
            CommandKind::Wait => parse_wait(arg(1), arg(2))?,
            CommandKind::Repl => Command::Repl(match spec.name {
                "repl|promote" => ReplCommand::Promote {
                    reason: args.get(2),
                },
                "repl|fence" => ReplCommand::Fence,
                "repl|unfence" => ReplCommand::Unfence,
                "repl|demote" => ReplCommand::Demote { upstream: arg(2) },
                "repl|follow" => ReplCommand::Follow { upstream: arg(2) },
                "repl|waitlsn" => {
                    let (lsn, timeout_ms) = parse_wait_lsn(arg(2), arg(3))?;
                    ReplCommand::WaitLsn { lsn, timeout_ms }
                }
                _ => return Err(wrong_arity()),
            }),
            CommandKind::Select => {
                let index = parse_integer(arg(1))?;
                if i32::try_from(index).is_err() {
                    return Err(CommandError::NotInteger);
                }
                if index != 0 {
                    return Err(CommandError::DbIndexOutOfRange);
                }
                Command::Select
            }
            CommandKind::LastLsn => Command::LastLsn,
            CommandKind::WaitLsn => {
                let (lsn, timeout_ms) = parse_wait_lsn(arg(1), arg(2))?;
                Command::WaitLsn { lsn, timeout_ms }
            }
        })
    }

    /// Lowercase name as in `COMMAND` (INCR, DECR, DECRBY all say `incrby`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Del { .. } => "del",
            Command::Exists { .. } => "exists",
            Command::IncrBy { .. } => "incrby",
            Command::MGet { .. } => "mget",
            Command::MSet { .. } => "mset",
            Command::Scan { .. } => "scan",
            Command::DbSize => "dbsize",
            Command::Ping { .. } => "ping",
            Command::Echo { .. } => "echo",
            Command::Auth { .. } => "auth",
            Command::Hello { .. } => "hello",
            Command::Info { .. } => "info",
            Command::Role => "role",
            Command::ClientSetName { .. } => "client|setname",
            Command::ClientGetName => "client|getname",
            Command::ClientSync { .. } => "client|sync",
            Command::ClientId => "client|id",
            Command::ClientInfo => "client|info",
            Command::Command(CommandQuery::List) => "command",
            Command::Command(CommandQuery::Count) => "command|count",
            Command::Command(CommandQuery::Info { .. }) => "command|info",
            Command::Command(CommandQuery::Docs { .. }) => "command|docs",
            Command::ConfigGet { .. } => "config|get",
            Command::ConfigSet { .. } => "config|set",
            Command::Multi => "multi",
            Command::Exec => "exec",
            Command::Discard => "discard",
            Command::Quit => "quit",
            Command::Shutdown => "shutdown",
            Command::Wait { .. } => "wait",
            Command::Select => "select",
            Command::LastLsn => "lastlsn",
            Command::WaitLsn { .. } => "waitlsn",
            Command::Repl(ReplCommand::Promote { .. }) => "repl|promote",
            Command::Repl(ReplCommand::Fence) => "repl|fence",
            Command::Repl(ReplCommand::Unfence) => "repl|unfence",
            Command::Repl(ReplCommand::Demote { .. }) => "repl|demote",
            Command::Repl(ReplCommand::Follow { .. }) => "repl|follow",
            Command::Repl(ReplCommand::WaitLsn { .. }) => "repl|waitlsn",
        }
    }

    /// Whether the command changes data (refused on a standby, logged in
    /// the WAL on a primary).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Set { .. }
                | Command::Del { .. }
                | Command::IncrBy { .. }
                | Command::MSet { .. }
        )
    }

    /// Whether an unauthenticated connection may run it (Redis's `no_auth`).
    pub fn allowed_unauthenticated(&self) -> bool {
        matches!(
            self,
            Command::Auth { .. } | Command::Hello { .. } | Command::Quit
        )
    }

    /// The keys the command reads or writes, in argument order.
    pub fn keys(&self) -> Keys<'a> {
        let none = Args::default();
        let (single, rest, step) = match *self {
            Command::Get { key } | Command::Set { key, .. } | Command::IncrBy { key, .. } => {
                (Some(key), none, 1)
            }
            Command::Del { keys } | Command::Exists { keys } | Command::MGet { keys } => {
                (None, keys, 1)
            }
            Command::MSet { pairs } => (None, pairs, 2),
            _ => (None, none, 1),
        };
        Keys {
            single,
            rest,
            index: 0,
            step,
        }
    }
}

fn container_display_name(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Client => "CLIENT",
        CommandKind::Command => "COMMAND",
        CommandKind::Repl => "REPL",
        _ => "CONFIG",
    }
}

/// Iterator over a command's keys; see [`Command::keys`].
#[derive(Clone, Debug)]
pub struct Keys<'a> {
    single: Option<&'a [u8]>,
    rest: Args<'a>,
    index: usize,
    step: usize,
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(key) = self.single.take() {
            return Some(key);
        }
        let key = self.rest.get(self.index)?;
        self.index += self.step;
        Some(key)
    }
}

/// `SET key value` options, as Redis's `parseExtendedStringArgumentsOrReply`.
fn parse_set(args: Args<'_>) -> Result<Command<'_>, CommandError> {
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut keep_ttl = false;
    let mut expires = false;
    let mut index = 3;
    while let Some(option) = args.get(index) {
        let has_next = index + 1 < args.len();
        if is_option(option, "NX") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is_option(option, "XX") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is_option(option, "GET") {
            get = true;
        } else if is_option(option, "KEEPTTL") && !expires {
            keep_ttl = true;
        } else if ["EX", "PX", "EXAT", "PXAT"]
            .iter()
            .any(|name| is_option(option, name))
            && !keep_ttl
            && !expires
            && has_next
        {
            expires = true;
            index += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        index += 1;
    }
    if expires {
        return Err(CommandError::ExpirationUnsupported);
    }
    Ok(Command::Set {
        key: args.get(1).unwrap_or_default(),
        value: args.get(2).unwrap_or_default(),
        condition,
        get,
    })
}

fn parse_scan(args: Args<'_>) -> Result<Command<'_>, CommandError> {
    let cursor = parse_cursor(args.get(1).unwrap_or_default())?;
    let mut pattern = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut type_name = None;
    let mut index = 2;
    while let Some(option) = args.get(index) {
        let Some(value) = args.get(index + 1) else {
            return Err(CommandError::Syntax);
        };
        if is_option(option, "COUNT") {
            let n = parse_integer(value)?;
            if n < 1 {
                return Err(CommandError::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is_option(option, "MATCH") {
            pattern = Some(value);
        } else if is_option(option, "TYPE") {
            type_name = Some(value);
        } else {
            return Err(CommandError::Syntax);
        }
        index += 2;
    }
    Ok(Command::Scan {
        cursor,
        pattern,
        count,
        type_name,
    })
}

fn parse_hello(args: Args<'_>) -> Result<Command<'_>, CommandError> {
    let mut protocol = None;
    if let Some(version) = args.get(1) {
        let version = parse_i64(version).ok_or(CommandError::ProtocolVersionNotInteger)?;
        protocol = Some(Protocol::from_version(version).ok_or(CommandError::UnsupportedProtocol)?);
    }
    let mut auth = None;
    let mut client_name = None;
    let mut index = 2;
    while let Some(option) = args.get(index) {
        let more = args.len() - index - 1;
        if is_option(option, "AUTH") && more >= 2 {
            let user = args.get(index + 1).unwrap_or_default();
            let password = args.get(index + 2).unwrap_or_default();
            auth = Some((user, password));
            index += 3;
        } else if is_option(option, "SETNAME") && more >= 1 {
            client_name = Some(validate_client_name(
                args.get(index + 1).unwrap_or_default(),
            )?);
            index += 2;
        } else {
            return Err(CommandError::HelloOption {
                option: lossy(option, ERROR_EXCERPT_BYTES_MAX),
            });
        }
    }
    Ok(Command::Hello {
        protocol,
        auth,
        client_name,
    })
}

fn parse_shutdown(args: Args<'_>) -> Result<Command<'_>, CommandError> {
    let (mut save, mut no_save) = (false, false);
    for option in args.skip(1) {
        if is_option(option, "NOSAVE") {
            no_save = true;
        } else if is_option(option, "SAVE") {
            save = true;
        } else if is_option(option, "ABORT") && args.len() == 2 {
            return Err(CommandError::NoShutdownInProgress);
        } else if !is_option(option, "NOW") && !is_option(option, "FORCE") {
            return Err(CommandError::Syntax);
        }
    }
    if save && no_save {
        return Err(CommandError::Syntax);
    }
    Ok(Command::Shutdown)
}

fn parse_wait<'a>(replicas: &[u8], timeout: &[u8]) -> Result<Command<'a>, CommandError> {
    let replicas = parse_integer(replicas)?;
    let timeout = parse_i64(timeout).ok_or(CommandError::TimeoutNotInteger)?;
    let timeout_ms = u64::try_from(timeout).map_err(|_| CommandError::TimeoutNegative)?;
    Ok(Command::Wait {
        replicas,
        timeout_ms,
    })
}

/// The arguments of `WAITLSN` and `REPL WAITLSN`: an LSN (a non-negative
/// integer, as `LASTLSN` and `INFO` print it) and a timeout in ms (WAIT's
/// rules and errors; 0 = no limit).
fn parse_wait_lsn(lsn: &[u8], timeout: &[u8]) -> Result<(u64, u64), CommandError> {
    let lsn = parse_integer(lsn)?;
    let lsn = u64::try_from(lsn).map_err(|_| CommandError::ValueNegative)?;
    let timeout = parse_i64(timeout).ok_or(CommandError::TimeoutNotInteger)?;
    let timeout_ms = u64::try_from(timeout).map_err(|_| CommandError::TimeoutNegative)?;
    Ok((lsn, timeout_ms))
}

/// INCRBY on a stored value: `current` is the stored bytes (`b"0"` for a
/// missing key), `by` the delta. The new value, or Redis's errors.
pub fn checked_incr(current: &[u8], by: i64) -> Result<i64, CommandError> {
    let current = parse_integer(current)?;
    current
        .checked_add(by)
        .ok_or(CommandError::IncrementOverflow)
}

/// Answers a `COMMAND` request from [`COMMAND_TABLE`], in Redis 7's shape.
pub fn write_command_reply(out: &mut Vec<u8>, protocol: Protocol, query: &CommandQuery<'_>) {
    match query {
        CommandQuery::Count => write_integer(out, COMMAND_TABLE.len() as i64),
        CommandQuery::List => write_all_info(out, protocol),
        CommandQuery::Info { names } if names.is_empty() => write_all_info(out, protocol),
        CommandQuery::Info { names } => {
            write_array_header(out, names.len());
            for name in *names {
                match lookup_spec(name) {
                    Some(spec) => write_command_info(out, protocol, spec),
                    None => write_null(out, protocol),
                }
            }
        }
        CommandQuery::Docs { names } => {
            let found: Vec<&CommandSpec> = if names.is_empty() {
                COMMAND_TABLE.iter().collect()
            } else {
                names.iter().filter_map(lookup_spec).collect()
            };
            write_map_header(out, protocol, found.len());
            for spec in found {
                write_bulk(out, spec.name.as_bytes());
                write_command_docs(out, protocol, spec);
            }
        }
    }
}

fn write_all_info(out: &mut Vec<u8>, protocol: Protocol) {
    write_array_header(out, COMMAND_TABLE.len());
    for spec in &COMMAND_TABLE {
        write_command_info(out, protocol, spec);
    }
}

/// One `COMMAND INFO` entry: name, arity, flags, first key, last key, step,
/// ACL categories, tips, key specs, subcommands.
fn write_command_info(out: &mut Vec<u8>, protocol: Protocol, spec: &CommandSpec) {
    write_array_header(out, 10);
    write_bulk(out, spec.name.as_bytes());
    write_integer(out, spec.arity);
    write_set_header(out, protocol, spec.flags.len());
    for flag in spec.flags {
        write_simple(out, flag);
    }
    write_integer(out, spec.first_key);
    write_integer(out, spec.last_key);
    write_integer(out, spec.key_step);
    write_set_header(out, protocol, 0);
    write_set_header(out, protocol, 0);
    write_array_header(out, 0);
    write_array_header(out, spec.subcommands.len());
    for sub in spec.subcommands {
        write_command_info(out, protocol, sub);
    }
}

/// One `COMMAND DOCS` entry: summary, since, group and subcommands.
fn write_command_docs(out: &mut Vec<u8>, protocol: Protocol, spec: &CommandSpec) {
    let has_subcommands = !spec.subcommands.is_empty();
    write_map_header(out, protocol, 3 + usize::from(has_subcommands));
    for (field, value) in [
        ("summary", spec.summary),
        ("since", spec.since),
        ("group", spec.group),
    ] {
        write_bulk(out, field.as_bytes());
        write_bulk(out, value.as_bytes());
    }
    if has_subcommands {
        write_bulk(out, b"subcommands");
        write_map_header(out, protocol, spec.subcommands.len());
        for sub in spec.subcommands {
            write_bulk(out, sub.name.as_bytes());
            write_command_docs(out, protocol, sub);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::super::resp::{OwnedArgs, RequestLimits, RequestParser};
    use super::*;

    fn owned(line: &str) -> OwnedArgs {
        OwnedArgs::from_args(line.split(' '))
    }

    /// Parses `line` (blank-separated) and returns the error text, or "ok".
    fn outcome(line: &str) -> String {
        let args = owned(line);
        match Command::parse(args.as_args()) {
            Ok(_) => "ok".to_owned(),
            Err(error) => error.to_string(),
        }
    }

    fn parsed<R>(line: &str, check: impl FnOnce(Command<'_>) -> R) -> R {
        let args = owned(line);
        check(Command::parse(args.as_args()).unwrap())
    }

    fn strings(args: Args<'_>) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn table_is_indexed_by_kind() {
        for spec in &COMMAND_TABLE {
            let kind = CommandKind::from_name(spec.name.to_uppercase().as_bytes()).unwrap();
            assert_eq!(kind.spec(), spec);
            assert!(spec.name.len() <= NAME_BYTES_MAX);
            assert_eq!(lookup_spec(spec.name.as_bytes()), Some(spec));
            for sub in spec.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", spec.name)));
                assert_eq!(lookup_spec(sub.name.to_uppercase().as_bytes()), Some(sub));
            }
        }
        assert_eq!(lookup_spec(b"nope|x"), None);
    }

    #[test]
    fn redis_error_texts() {
        for (line, expected) in [
            (
                "foo a b",
                "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
            ),
            (
                "foo",
                "ERR unknown command 'foo', with args beginning with: ",
            ),
            ("get", "ERR wrong number of arguments for 'get' command"),
            ("GET a b", "ERR wrong number of arguments for 'get' command"),
            ("mset a", "ERR wrong number of arguments for 'mset' command"),
            (
                "mset a 1 b",
                "ERR wrong number of arguments for 'mset' command",
            ),
            (
                "ping a b",
                "ERR wrong number of arguments for 'ping' command",
            ),
            (
                "client",
                "ERR wrong number of arguments for 'client' command",
            ),
            (
                "client setname",
                "ERR wrong number of arguments for 'client|setname' command",
            ),
            (
                "client list",
                "ERR unknown subcommand 'list'. Try CLIENT HELP.",
            ),
            (
                "config resetstat",
                "ERR unknown subcommand 'resetstat'. Try CONFIG HELP.",
            ),
            (
                "config set a",
                "ERR wrong number of arguments for 'config|set' command",
            ),
            (
                "config set a 1 b",
                "ERR wrong number of arguments for 'config|set' command",
            ),
            (
                "command getkeys x",
                "ERR unknown subcommand 'getkeys'. Try COMMAND HELP.",
            ),
            (
                "incrby k 1.5",
                "ERR value is not an integer or out of range",
            ),
            ("incrby k +1", "ERR value is not an integer or out of range"),
            ("incrby k 01", "ERR value is not an integer or out of range"),
            (
                "decrby k -9223372036854775808",
                "ERR decrement would overflow",
            ),
            ("set k v nx xx", "ERR syntax error"),
            ("set k v foo", "ERR syntax error"),
            ("set k v ex", "ERR syntax error"),
            ("set k v ex 10 px 10", "ERR syntax error"),
            ("set k v ex 10", "ERR expiration is not supported"),
            ("set k v PXAT 10 nx", "ERR expiration is not supported"),
            ("set k v keepttl ex 1", "ERR syntax error"),
            ("scan x", "ERR invalid cursor"),
            ("scan -1", "ERR invalid cursor"),
            ("scan 0 count 0", "ERR syntax error"),
            (
                "scan 0 count x",
                "ERR value is not an integer or out of range",
            ),
            ("scan 0 match", "ERR syntax error"),
            ("scan 0 limit 5", "ERR syntax error"),
            ("auth a b c", "ERR syntax error"),
            (
                "hello x",
                "ERR Protocol version is not an integer or out of range",
            ),
            ("hello 4", "NOPROTO unsupported protocol version"),
            ("hello 3 auth u", "ERR Syntax error in HELLO option 'auth'"),
            (
                "hello 3 setname a\tb",
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            (
                "client setname a\nb",
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            ("select 1", "ERR DB index is out of range"),
            ("select x", "ERR value is not an integer or out of range"),
            (
                "select 4294967296",
                "ERR value is not an integer or out of range",
            ),
            ("wait x 0", "ERR value is not an integer or out of range"),
            ("wait 1 x", "ERR timeout is not an integer or out of range"),
            ("wait 1 -1", "ERR timeout is negative"),
            ("shutdown nosave save", "ERR syntax error"),
            ("shutdown later", "ERR syntax error"),
            ("shutdown abort", "ERR No shutdown in progress."),
            (
                "waitlsn",
                "ERR wrong number of arguments for 'waitlsn' command",
            ),
            (
                "waitlsn 1",
                "ERR wrong number of arguments for 'waitlsn' command",
            ),
            (
                "waitlsn 1 2 3",
                "ERR wrong number of arguments for 'waitlsn' command",
            ),
            ("waitlsn x 0", "ERR value is not an integer or out of range"),
            (
                "waitlsn 1.5 0",
                "ERR value is not an integer or out of range",
            ),
            (
                "waitlsn 18446744073709551615 0",
                "ERR value is not an integer or out of range",
            ),
            (
                "waitlsn -1 0",
                "ERR value is out of range, must be positive",
            ),
            (
                "waitlsn 1 x",
                "ERR timeout is not an integer or out of range",
            ),
            ("waitlsn 1 -1", "ERR timeout is negative"),
            (
                "repl waitlsn x 0",
                "ERR value is not an integer or out of range",
            ),
            (
                "repl waitlsn -5 0",
                "ERR value is out of range, must be positive",
            ),
            ("repl waitlsn 5 -1", "ERR timeout is negative"),
            (
                "repl waitlsn 5",
                "ERR wrong number of arguments for 'repl|waitlsn' command",
            ),
            ("repl nope", "ERR unknown subcommand 'nope'. Try REPL HELP."),
        ] {
            assert_eq!(outcome(line), expected, "{line:?}");
        }
        let long = format!("foo {} b", "a".repeat(200));
        let expected = format!(
            "ERR unknown command 'foo', with args beginning with: '{}' ",
            "a".repeat(128)
        );
        assert_eq!(outcome(&long), expected);
    }

    #[test]
    fn accepted_forms() {
        for line in [
            "GeT k",
            "set k v NX GET",
            "set k v xx keepttl",
            "set k v nx nx",
            "del a b c",
            "exists a",
            "mget a b",
            "mset a 1 b 2",
            "scan 18446744073709551615 MATCH user:* COUNT 100 TYPE string",
            "dbsize",
            "ping",
            "ping hi",
            "echo hi",
            "auth pw",
            "auth user pw",
            "hello",
            "hello 2",
            "hello 3 AUTH default pw SETNAME app",
            "hello 3 setname ",
            "info",
            "info replication server",
            "role",
            "lastlsn",
            "client setname ",
            "client getname",
            "client id",
            "client info",
            "command",
            "command count",
            "command docs",
            "command info get set",
            "config get save appendonly",
            "config set a 1 b 2",
            "multi",
            "exec",
            "discard",
            "quit",
            "quit now",
            "shutdown",
            "shutdown nosave now force",
            "wait 1 0",
            "select 0",
            "waitlsn 0 0",
            "WaitLsn 123456 100",
            "waitlsn 9223372036854775807 0",
            "repl waitlsn 10 0",
        ] {
            assert_eq!(outcome(line), "ok", "{line:?}");
        }
    }

    #[test]
    fn parsed_fields() {
        parsed("set k v XX GET", |c| {
            assert_eq!(
                c,
                Command::Set {
                    key: b"k",
                    value: b"v",
                    condition: SetCondition::IfPresent,
                    get: true
                }
            );
            assert!(c.is_write());
            assert_eq!(c.keys().collect::<Vec<_>>(), vec![b"k"]);
        });
        parsed("decr n", |c| {
            assert_eq!(
                c,
                Command::IncrBy {
                    key: b"n",
                    delta: -1
                }
            )
        });
        parsed("decrby n -5", |c| {
            assert_eq!(
                c,
                Command::IncrBy {
                    key: b"n",
                    delta: 5
                }
            )
        });
        parsed("incrby n -9223372036854775808", |c| {
            assert_eq!(
                c,
                Command::IncrBy {
                    key: b"n",
                    delta: i64::MIN
                }
            )
        });
        parsed("mset a 1 b 2", |c| {
            assert_eq!(c.keys().collect::<Vec<_>>(), vec![b"a", b"b"]);
            let Command::MSet { pairs } = c else {
                panic!("{c:?}")
            };
            assert_eq!(pairs.pairs().count(), 2);
        });
        parsed("mget a b", |c| {
            assert!(!c.is_write());
            assert_eq!(c.keys().collect::<Vec<_>>(), vec![b"a", b"b"]);
        });
        parsed("scan 7", |c| {
            assert_eq!(
                c,
                Command::Scan {
                    cursor: 7,
                    pattern: None,
                    count: 10,
                    type_name: None
                }
            )
        });
        parsed("scan 0 match a* count 5 match b*", |c| {
            let Command::Scan { pattern, count, .. } = c else {
                panic!("{c:?}")
            };
            assert_eq!((pattern, count), (Some(&b"b*"[..]), 5));
        });
        parsed("hello 3 auth u p setname n", |c| {
            assert_eq!(
                c,
                Command::Hello {
                    protocol: Some(Protocol::Resp3),
                    auth: Some((b"u", b"p")),
                    client_name: Some(b"n"),
                }
            );
            assert!(c.allowed_unauthenticated());
        });
        parsed("auth u p", |c| {
            assert_eq!(
                c,
                Command::Auth {
                    username: Some(b"u"),
                    password: b"p"
                }
            )
        });
        parsed("info a b", |c| {
            let Command::Info { sections } = c else {
                panic!("{c:?}")
            };
            assert_eq!(strings(sections), ["a", "b"]);
        });
        parsed("config get a b", |c| {
            let Command::ConfigGet { patterns } = c else {
                panic!("{c:?}")
            };
            assert_eq!(strings(patterns), ["a", "b"]);
        });
        parsed("wait 2 100", |c| {
            assert_eq!(
                c,
                Command::Wait {
                    replicas: 2,
                    timeout_ms: 100
                }
            )
        });
        parsed("waitlsn 4096 250", |c| {
            assert_eq!(
                c,
                Command::WaitLsn {
                    lsn: 4096,
                    timeout_ms: 250
                }
            );
            assert_eq!(c.name(), "waitlsn");
            assert!(!c.is_write());
            assert_eq!(c.keys().count(), 0);
        });
        parsed("repl waitlsn 7 0", |c| {
            assert_eq!(
                c,
                Command::Repl(ReplCommand::WaitLsn {
                    lsn: 7,
                    timeout_ms: 0
                })
            )
        });
        parsed("command info get", |c| assert_eq!(c.name(), "command|info"));
        parsed("ping", |c| {
            assert_eq!(c.keys().count(), 0);
            assert!(!c.allowed_unauthenticated());
        });
    }

    #[test]
    fn incr_helper() {
        assert_eq!(checked_incr(b"10", 5), Ok(15));
        assert_eq!(checked_incr(b"0", -1), Ok(-1));
        assert_eq!(checked_incr(b"abc", 1), Err(CommandError::NotInteger));
        assert_eq!(checked_incr(b" 1", 1), Err(CommandError::NotInteger));
        assert_eq!(
            checked_incr(b"9223372036854775807", 1)
                .unwrap_err()
                .to_string(),
            "ERR increment or decrement would overflow"
        );
        assert_eq!(
            checked_incr(b"-9223372036854775808", -1),
            Err(CommandError::IncrementOverflow)
        );
    }

    /// A tiny RESP reader, enough to check that COMMAND replies are
    /// well-formed: returns the bytes one complete value takes.
    fn value_len(bytes: &[u8]) -> Option<usize> {
        let cr = bytes.iter().position(|&b| b == b'\r')?;
        let line = std::str::from_utf8(bytes.get(1..cr)?).ok()?;
        let mut at = cr + 2;
        let children = match bytes.first()? {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' => 0,
            b'$' | b'=' => {
                let len: i64 = line.parse().ok()?;
                if len >= 0 {
                    at += usize::try_from(len).ok()? + 2;
                }
                0
            }
            b'*' | b'~' => line.parse::<i64>().ok()?.max(0),
            b'%' => line.parse::<i64>().ok()? * 2,
            _ => return None,
        };
        for _ in 0..children {
            at += value_len(bytes.get(at..)?)?;
        }
        (at <= bytes.len()).then_some(at)
    }

    #[test]
    fn command_replies_are_well_formed() {
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            for line in [
                "command",
                "command count",
                "command info",
                "command info get nope client|setname",
                "command docs",
                "command docs config nope",
            ] {
                let args = owned(line);
                let Command::Command(query) = Command::parse(args.as_args()).unwrap() else {
                    panic!("{line}")
                };
                let mut out = Vec::new();
                write_command_reply(&mut out, protocol, &query);
                assert_eq!(value_len(&out), Some(out.len()), "{line} {protocol:?}");
            }
        }
        let mut out = Vec::new();
        write_command_reply(&mut out, Protocol::Resp2, &CommandQuery::Count);
        assert_eq!(out, b":31\r\n");
        let args = owned("command info nope");
        let Command::Command(query) = Command::parse(args.as_args()).unwrap() else {
            panic!()
        };
        out.clear();
        write_command_reply(&mut out, Protocol::Resp2, &query);
        assert_eq!(out, b"*1\r\n$-1\r\n");
    }

    #[test]
    fn parses_straight_from_the_wire() {
        let mut parser = RequestParser::new(RequestLimits::default());
        parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nincr n\r\n");
        let args = parser.next_request().unwrap().unwrap();
        assert!(matches!(
            Command::parse(args),
            Ok(Command::Set { key: b"k", .. })
        ));
        let args = parser.next_request().unwrap().unwrap();
        assert_eq!(
            Command::parse(args),
            Ok(Command::IncrBy {
                key: b"n",
                delta: 1
            })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_args_never_panic(
            args in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(vec![
                        "set", "SCAN", "hello", "client", "config", "command", "get", "mset",
                        "nx", "xx", "ex", "get", "match", "count", "type", "auth", "setname",
                        "0", "-1", "3", "abort", "nosave", "save", "docs", "info", "set",
                        "waitlsn", "lastlsn", "repl",
                    ]).prop_map(|s| s.as_bytes().to_vec()),
                    prop::collection::vec(any::<u8>(), 0..6),
                ],
                1..7,
            ),
        ) {
            let owned = OwnedArgs::from_args(&args);
            if let Ok(command) = Command::parse(owned.as_args()) {
                prop_assert!(command.keys().count() < args.len());
                let _ = (command.name(), command.is_write());
            }
        }

        #[test]
        fn integers_parse_like_rust_canonical_form(value in any::<i64>()) {
            let line = format!("incrby k {value}");
            parsed(&line, |c| assert_eq!(c, Command::IncrBy { key: b"k", delta: value }));
        }
    }
}
