//! Transaction scripts: the template language and the built-in mixes.
//!
//! A script is one transaction, written like a pgbench script:
//!
//! ```text
//! -- comment (also `#`)
//! \set aid random(1, 100000 * :scale)
//! \set delta random(-5000, 5000)
//! MULTI
//! INCRBY account::aid :delta
//! SET history::run_id::client_id::seq ":aid :delta"
//! EXEC
//! ```
//!
//! `\set NAME EXPR` evaluates an integer expression: decimal literals, `:var`,
//! `+ - * / %`, unary minus, parentheses and the functions `random(lo, hi)`
//! (uniform, inclusive), `abs(x)`, `min(a, b)`, `max(a, b)`. Arithmetic is checked:
//! overflow or division by zero fails the transaction, it never wraps.
//! Any other line is one command: whitespace-separated arguments, a double-quoted
//! argument may hold spaces (`\"` and `\\` escape). In arguments `:name` is replaced
//! by the variable's decimal value when `name` is a built-in or was `\set` on an
//! earlier line; otherwise the text stays literal (as in pgbench), so `account::aid`
//! is `account:` followed by the value of `aid`.
//!
//! Built-in variables: `scale`, `client_id` (0-based, unique in a run), `run_id`
//! (random per run, so history keys of different runs never collide) and `seq`
//! (per client, incremented on every attempt including retries, so a retried
//! transaction whose first attempt did commit still leaves one history entry per
//! applied attempt and `check` stays exact).
//!
//! All commands of a transaction are sent in one write and their replies read in
//! order; one reply per command (RESP2 answers MULTI and each queued command too).
//! A transaction's randomness comes from one seed (`render` takes it), so a retry
//! re-renders the same values with only `seq` changed, like pgbench retries.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::resp;

pub const VAR_SCALE: usize = 0;
pub const VAR_CLIENT_ID: usize = 1;
pub const VAR_RUN_ID: usize = 2;
pub const VAR_SEQ: usize = 3;
const BUILTIN_NAMES: [&str; 4] = ["scale", "client_id", "run_id", "seq"];

/// Arguments per command line accepted; a bound, not a tuning choice.
const ARGS_MAX: usize = 1024;
/// Commands per script accepted.
const COMMANDS_MAX: usize = 4096;

/// Index of `SET history:...` among the TPC-B script's commands (MULTI is 0).
const TPCB_HISTORY_COMMAND: usize = 5;

/// The built-in mixes selectable with `--mix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// MULTI/EXEC of INCRBY account, GET account, INCRBY teller, INCRBY branch and
    /// SET history; `check` stays exact.
    Tpcb,
    /// One INCRBY account, no MULTI, no history: `check` fails after it by design.
    SimpleUpdate,
    /// One GET account.
    SelectOnly,
    /// SET key:{r} with a 100-byte value, then GET it; needs no data set.
    SetGet,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Tpcb => "tpcb",
            Mix::SimpleUpdate => "simple-update",
            Mix::SelectOnly => "select-only",
            Mix::SetGet => "set-get",
        }
    }

    /// The command of this mix's transaction that writes something no other
    /// transaction writes (its index among the script's commands), for
    /// `run --read-your-writes`: after the commit, that key must hold that
    /// value on a standby that applied the commit LSN, whatever else ran.
    /// TPC-B's history row qualifies (`history:run_id:client_id:seq`, one
    /// key per attempt). The others have none: simple-update's account
    /// and set-get's `key:r` are shared by all clients (a later write by
    /// another client hides ours; set-get's value is the same for all), and
    /// select-only writes nothing.
    pub fn read_back_command(self) -> Option<usize> {
        match self {
            Mix::Tpcb => Some(TPCB_HISTORY_COMMAND),
            Mix::SimpleUpdate | Mix::SelectOnly | Mix::SetGet => None,
        }
    }

    /// The mixes [`Mix::read_back_command`] supports, for error messages.
    pub fn with_read_back() -> Vec<&'static str> {
        [Mix::Tpcb, Mix::SimpleUpdate, Mix::SelectOnly, Mix::SetGet]
            .into_iter()
            .filter(|m| m.read_back_command().is_some())
            .map(Mix::name)
            .collect()
    }

    /// The script text of this mix, in the template language.
    pub fn text(self) -> String {
        let aid = "\\set aid random(1, 100000 * :scale)\n";
        let delta = "\\set delta random(-5000, 5000)\n";
        match self {
            Mix::Tpcb => format!(
                "{aid}\\set tid random(1, 10 * :scale)\n\\set bid random(1, :scale)\n{delta}\
                 MULTI\n\
                 INCRBY account::aid :delta\n\
                 GET account::aid\n\
                 INCRBY teller::tid :delta\n\
                 INCRBY branch::bid :delta\n\
                 SET history::run_id::client_id::seq \":aid :tid :bid :delta\"\n\
                 EXEC\n"
            ),
            Mix::SimpleUpdate => format!("{aid}{delta}INCRBY account::aid :delta\n"),
            Mix::SelectOnly => format!("{aid}GET account::aid\n"),
            Mix::SetGet => format!(
                "\\set r random(1, 100000 * :scale)\nSET key::r {}\nGET key::r\n",
                "x".repeat(100)
            ),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{script}:{line}: {reason}")]
pub struct ParseError {
    pub script: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    #[error("integer overflow in \\set {var}")]
    Overflow { var: String },
    #[error("division by zero in \\set {var}")]
    DivisionByZero { var: String },
    #[error("random({lo}, {hi}): empty range in \\set {var}")]
    RangeEmpty { var: String, lo: i64, hi: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Random,
    Abs,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Num(i64),
    Var(usize),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Vec<u8>),
    Var(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Set { slot: usize, expr: Expr },
    Command(Vec<Vec<Piece>>),
}

/// A parsed script, ready to render transactions.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    steps: Vec<Step>,
    var_names: Vec<String>,
    /// Replies one transaction produces (one per command).
    pub command_count: usize,
    /// True if the script reads `:scale` (then the run needs a scale).
    pub uses_scale: bool,
}

impl Script {
    pub fn parse(name: &str, text: &str) -> Result<Script, ParseError> {
        let mut script = Script {
            name: name.to_string(),
            steps: Vec::new(),
            var_names: BUILTIN_NAMES.iter().map(|s| s.to_string()).collect(),
            command_count: 0,
            uses_scale: false,
        };
        for (i, raw) in text.lines().enumerate() {
            let fail = |reason: String| ParseError {
                script: name.to_string(),
                line: i + 1,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with("--") || line.starts_with('#') {
                continue;
            }
            if let Some(meta) = line.strip_prefix('\\') {
                let step = script.parse_meta(meta).map_err(fail)?;
                script.steps.push(step);
                continue;
            }
            let args = tokenize(line).map_err(fail)?;
            if args.len() > ARGS_MAX {
                return Err(fail(format!("more than {ARGS_MAX} arguments")));
            }
            let args: Vec<Vec<Piece>> = args.iter().map(|a| script.substitute(a)).collect();
            script.steps.push(Step::Command(args));
            script.command_count += 1;
            if script.command_count > COMMANDS_MAX {
                return Err(fail(format!("more than {COMMANDS_MAX} commands")));
            }
        }
        if script.command_count == 0 {
            return Err(ParseError {
                script: name.to_string(),
                line: 0,
                reason: "script has no commands".to_string(),
            });
        }
        Ok(script)
    }

    /// Number of variable slots `render` needs.
    pub fn var_count(&self) -> usize {
        self.var_names.len()
    }

    fn parse_meta(&mut self, meta: &str) -> Result<Step, String> {
        let mut parts = meta.splitn(3, char::is_whitespace);
        let word = parts.next().unwrap_or("");
        if word != "set" {
            return Err(format!(
                "unknown meta-command \\{word} (only \\set is supported)"
            ));
        }
        let var = parts.next().unwrap_or("").trim();
        if var.is_empty() || !var.bytes().all(is_name_byte) {
            return Err(format!("bad variable name {var:?} in \\set"));
        }
        let expr_text = parts.next().unwrap_or("").trim();
        if expr_text.is_empty() {
            return Err(format!("\\set {var} has no expression"));
        }
        let mut parser = ExprParser {
            src: expr_text.as_bytes(),
            pos: 0,
            script: self,
        };
        let expr = parser.parse_all()?;
        let slot = match self.var_names.iter().position(|n| n == var) {
            Some(slot) if slot < BUILTIN_NAMES.len() => {
                return Err(format!("cannot \\set the built-in variable {var}"));
            }
            Some(slot) => slot,
            None => {
                self.var_names.push(var.to_string());
                self.var_names.len() - 1
            }
        };
        Ok(Step::Set { slot, expr })
    }

    fn lookup(&mut self, name: &str) -> Option<usize> {
        let slot = self.var_names.iter().position(|n| n == name)?;
        if slot == VAR_SCALE {
            self.uses_scale = true;
        }
        Some(slot)
    }

    /// Splits one argument into literal text and known variables.
    fn substitute(&mut self, arg: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < arg.len() {
            if arg[i] == b':' {
                let end = arg[i + 1..].iter().position(|b| !is_name_byte(*b));
                let end = end.map_or(arg.len(), |e| i + 1 + e);
                let name = std::str::from_utf8(&arg[i + 1..end]).unwrap_or("");
                if !name.is_empty() {
                    if let Some(slot) = self.lookup(name) {
                        if !lit.is_empty() {
                            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                        }
                        pieces.push(Piece::Var(slot));
                        i = end;
                        continue;
                    }
                }
            }
            lit.push(arg[i]);
            i += 1;
        }
        if !lit.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        pieces
    }

    /// Evaluates the transaction with randomness from `seed` and appends its
    /// RESP-encoded commands to `out`. `vars` must have `var_count()` slots with the
    /// built-ins filled in.
    pub fn render(&self, vars: &mut [i64], seed: u64, out: &mut Vec<u8>) -> Result<(), EvalError> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut arg = Vec::new();
        for step in &self.steps {
            match step {
                Step::Set { slot, expr } => {
                    let name = self.var_names.get(*slot).map_or("?", String::as_str);
                    let value = eval(expr, vars, &mut rng, name)?;
                    if let Some(v) = vars.get_mut(*slot) {
                        *v = value;
                    }
                }
                Step::Command(args) => {
                    out.push(b'*');
                    resp::push_decimal(out, args.len() as u64);
                    out.extend_from_slice(b"\r\n");
                    for pieces in args {
                        arg.clear();
                        render_arg(pieces, vars, &mut arg);
                        out.push(b'$');
                        resp::push_decimal(out, arg.len() as u64);
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&arg);
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
        Ok(())
    }
}

fn render_arg(pieces: &[Piece], vars: &[i64], out: &mut Vec<u8>) {
    for piece in pieces {
        match piece {
            Piece::Lit(bytes) => out.extend_from_slice(bytes),
            Piece::Var(slot) => {
                let v = vars.get(*slot).copied().unwrap_or(0);
                if v < 0 {
                    out.push(b'-');
                }
                resp::push_decimal(out, v.unsigned_abs());
            }
        }
    }
}

fn eval(expr: &Expr, vars: &[i64], rng: &mut SmallRng, var: &str) -> Result<i64, EvalError> {
    let overflow = || EvalError::Overflow {
        var: var.to_string(),
    };
    Ok(match expr {
        Expr::Num(n) => *n,
        Expr::Var(slot) => vars.get(*slot).copied().unwrap_or(0),
        Expr::Neg(e) => eval(e, vars, rng, var)?
            .checked_neg()
            .ok_or_else(overflow)?,
        Expr::Bin(op, a, b) => {
            let a = eval(a, vars, rng, var)?;
            let b = eval(b, vars, rng, var)?;
            if matches!(op, Op::Div | Op::Rem) && b == 0 {
                return Err(EvalError::DivisionByZero {
                    var: var.to_string(),
                });
            }
            let r = match op {
                Op::Add => a.checked_add(b),
                Op::Sub => a.checked_sub(b),
                Op::Mul => a.checked_mul(b),
                Op::Div => a.checked_div(b),
                Op::Rem => a.checked_rem(b),
            };
            r.ok_or_else(overflow)?
        }
        Expr::Call(func, args) => {
            let mut values = [0i64; 2];
            for (slot, arg) in values.iter_mut().zip(args) {
                *slot = eval(arg, vars, rng, var)?;
            }
            let [a, b] = values;
            match func {
                Func::Random if a > b => {
                    return Err(EvalError::RangeEmpty {
                        var: var.to_string(),
                        lo: a,
                        hi: b,
                    })
                }
                Func::Random => rng.random_range(a..=b),
                Func::Abs => a.checked_abs().ok_or_else(overflow)?,
                Func::Min => a.min(b),
                Func::Max => a.max(b),
            }
        }
    })
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits a command line into arguments; double quotes group, `\"` and `\\` escape.
fn tokenize(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let mut bytes = line.bytes().peekable();
    while let Some(&b) = bytes.peek() {
        if b.is_ascii_whitespace() {
            bytes.next();
            continue;
        }
        let mut arg = Vec::new();
        if b == b'"' {
            bytes.next();
            let mut closed = false;
            while let Some(c) = bytes.next() {
                match c {
                    b'"' => {
                        closed = true;
                        break;
                    }
                    b'\\' => match bytes.next() {
                        Some(e @ (b'"' | b'\\')) => arg.push(e),
                        Some(e) => arg.extend_from_slice(&[b'\\', e]),
                        None => return Err("unterminated escape".to_string()),
                    },
                    c => arg.push(c),
                }
            }
            if !closed {
                return Err("unterminated double quote".to_string());
            }
        } else {
            while let Some(&c) = bytes.peek() {
                if c.is_ascii_whitespace() {
                    break;
                }
                arg.push(c);
                bytes.next();
            }
        }
        args.push(arg);
    }
    Ok(args)
}

/// Recursive-descent parser for `\set` expressions.
struct ExprParser<'a> {
    src: &'a [u8],
    pos: usize,
    script: &'a mut Script,
}

/// Deepest expression nesting accepted (parentheses, unary minus).
const EXPR_DEPTH_MAX: usize = 64;

impl ExprParser<'_> {
    fn parse_all(&mut self) -> Result<Expr, String> {
        let e = self.expr(0)?;
        self.skip_ws();
        if self.pos < self.src.len() {
            return Err(format!("unexpected text at column {}", self.pos + 1));
        }
        Ok(e)
    }

    fn skip_ws(&mut self) {
        while self
            .src
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.src.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at column {}",
                b as char,
                self.pos + 1
            ))
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.term(depth)?;
        loop {
            let op = match self.peek() {
                Some(b'+') => Op::Add,
                Some(b'-') => Op::Sub,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.term(depth)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn term(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        loop {
            let op = match self.peek() {
                Some(b'*') => Op::Mul,
                Some(b'/') => Op::Div,
                Some(b'%') => Op::Rem,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > EXPR_DEPTH_MAX {
            return Err("expression nested too deeply".to_string());
        }
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                let inner = self.unary(depth + 1)?;
                Ok(match inner {
                    Expr::Num(n) => Expr::Num(n.checked_neg().ok_or("literal overflows")?),
                    other => Expr::Neg(Box::new(other)),
                })
            }
            Some(b'(') => {
                self.pos += 1;
                let e = self.expr(depth + 1)?;
                self.expect(b')')?;
                Ok(e)
            }
            Some(b':') => {
                self.pos += 1;
                let name = self.name();
                let slot = self
                    .script
                    .lookup(&name)
                    .ok_or_else(|| format!("unknown variable :{name}"))?;
                Ok(Expr::Var(slot))
            }
            Some(b) if b.is_ascii_digit() => {
                let start = self.pos;
                while self.src.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
                text.parse()
                    .map(Expr::Num)
                    .map_err(|_| format!("bad number {text}"))
            }
            Some(b) if b.is_ascii_alphabetic() => self.call(depth),
            Some(b) => Err(format!(
                "unexpected '{}' at column {}",
                b as char,
                self.pos + 1
            )),
            None => Err("expression ends early".to_string()),
        }
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        while self.src.get(self.pos).copied().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn call(&mut self, depth: usize) -> Result<Expr, String> {
        let name = self.name();
        let (func, arity) = match name.as_str() {
            "random" => (Func::Random, 2),
            "abs" => (Func::Abs, 1),
            "min" => (Func::Min, 2),
            "max" => (Func::Max, 2),
            _ => return Err(format!("unknown function {name}")),
        };
        self.expect(b'(')?;
        let mut args = vec![self.expr(depth + 1)?];
        while self.peek() == Some(b',') {
            self.pos += 1;
            args.push(self.expr(depth + 1)?);
        }
        self.expect(b')')?;
        if args.len() != arity {
            return Err(format!(
                "{name} takes {arity} arguments, got {}",
                args.len()
            ));
        }
        Ok(Expr::Call(func, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{decode, Value};

    fn render_once(script: &Script, scale: i64, seed: u64) -> Vec<Value> {
        let mut vars = vec![0; script.var_count()];
        vars[VAR_SCALE] = scale;
        vars[VAR_CLIENT_ID] = 3;
        vars[VAR_RUN_ID] = 77;
        vars[VAR_SEQ] = 9;
        let mut out = Vec::new();
        script.render(&mut vars, seed, &mut out).unwrap();
        let mut pos = 0;
        let mut cmds = Vec::new();
        while pos < out.len() {
            let (v, used) = decode(&out[pos..]).unwrap().unwrap();
            cmds.push(v);
            pos += used;
        }
        cmds
    }

    fn args(v: &Value) -> Vec<String> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| String::from_utf8(i.as_bytes().unwrap().to_vec()).unwrap())
                .collect(),
            _ => panic!("not an array"),
        }
    }

    #[test]
    fn builtin_mixes_parse() {
        for mix in [Mix::Tpcb, Mix::SimpleUpdate, Mix::SelectOnly, Mix::SetGet] {
            let s = Script::parse(mix.name(), &mix.text()).unwrap();
            assert!(s.uses_scale);
            assert_eq!(render_once(&s, 1, 1).len(), s.command_count);
        }
    }

    #[test]
    fn tpcb_renders_consistent_values() {
        let s = Script::parse("tpcb", &Mix::Tpcb.text()).unwrap();
        for seed in 0..200 {
            let cmds: Vec<Vec<String>> = render_once(&s, 2, seed).iter().map(args).collect();
            assert_eq!(cmds[0], ["MULTI"]);
            let aid: i64 = cmds[1][1]
                .strip_prefix("account:")
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=200_000).contains(&aid));
            let delta: i64 = cmds[1][2].parse().unwrap();
            assert!((-5000..=5000).contains(&delta));
            assert_eq!(cmds[5][1], "history:77:3:9");
            let hist: Vec<&str> = cmds[5][2].split(' ').collect();
            assert_eq!(hist[0], aid.to_string());
            assert_eq!(hist[3], delta.to_string());
            assert_eq!(cmds[6], ["EXEC"]);
        }
    }

    #[test]
    fn read_back_command_is_the_unique_history_row() {
        let s = Script::parse("tpcb", &Mix::Tpcb.text()).unwrap();
        let index = Mix::Tpcb.read_back_command().unwrap();
        let cmds: Vec<Vec<String>> = render_once(&s, 1, 5).iter().map(args).collect();
        assert_eq!(cmds[index][0], "SET");
        assert_eq!(cmds[index][1], "history:77:3:9");
        assert_eq!(Mix::with_read_back(), ["tpcb"]);
        for mix in [Mix::SimpleUpdate, Mix::SelectOnly, Mix::SetGet] {
            assert_eq!(mix.read_back_command(), None);
        }
    }

    #[test]
    fn same_seed_same_transaction() {
        let s = Script::parse("tpcb", &Mix::Tpcb.text()).unwrap();
        assert_eq!(render_once(&s, 1, 42), render_once(&s, 1, 42));
    }

    #[test]
    fn unknown_names_stay_literal() {
        let s = Script::parse("t", "GET foo:bar :scale\n").unwrap();
        assert_eq!(args(&render_once(&s, 5, 0)[0]), ["GET", "foo:bar", "5"]);
    }

    #[test]
    fn expressions_evaluate() {
        let s = Script::parse(
            "t",
            "\\set x -(2 + 3) * 4 % 7 + abs(-1) + max(1, 9)\nGET :x\n",
        );
        let s = s.unwrap();
        assert_eq!(args(&render_once(&s, 1, 0)[0]), ["GET", "4"]);
    }

    #[test]
    fn errors_are_reported() {
        assert!(Script::parse("t", "").is_err());
        assert!(Script::parse("t", "\\sleep 1\nGET a\n").is_err());
        assert!(Script::parse("t", "\\set x random(1)\nGET a\n").is_err());
        assert!(Script::parse("t", "\\set x :nope\nGET a\n").is_err());
        assert!(Script::parse("t", "\\set x (1\nGET a\n").is_err());
        assert!(Script::parse("t", "SET a \"b\n").is_err());
        assert!(Script::parse("t", "\\set scale 3\nGET a\n").is_err());
        let s = Script::parse("t", "\\set x 1 / 0\nGET a\n").unwrap();
        let mut vars = vec![0; s.var_count()];
        assert!(s.render(&mut vars, 0, &mut Vec::new()).is_err());
    }
}
