//! Goal: every RESP command of the storage-core issue works from real
//! clients (the `redis` crate and `redis-cli`), errors included.
//! Method: one node process per test on free loopback ports in a temp dir.

mod common;

use common::{redis_cli, NodeProc};
use redis::{Commands, RedisResult, Value};

fn node() -> (tempfile::TempDir, NodeProc) {
    let dir = tempfile::tempdir().unwrap();
    let n = NodeProc::start(&dir.path().join("data"), &[]);
    (dir, n)
}

#[test]
fn strings_counters_and_multi_key_commands() {
    let (_d, n) = node();
    let mut c = n.client();
    let _: () = c.set("a", "1").unwrap();
    assert_eq!(c.get::<_, String>("a").unwrap(), "1");
    assert_eq!(c.get::<_, Option<String>>("missing").unwrap(), None);
    // NX / XX
    let r: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("2")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None);
    let r: Option<String> = redis::cmd("SET")
        .arg("b")
        .arg("2")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None);
    let r: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("3")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r.as_deref(), Some("OK"));
    assert_eq!(c.get::<_, String>("a").unwrap(), "3");
    // counters
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(
        redis::cmd("INCRBY")
            .arg("n")
            .arg(10)
            .query::<i64>(&mut c)
            .unwrap(),
        11
    );
    assert_eq!(
        redis::cmd("DECRBY")
            .arg("n")
            .arg(20)
            .query::<i64>(&mut c)
            .unwrap(),
        -9
    );
    assert_eq!(
        redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(),
        -10
    );
    let err: RedisResult<i64> = redis::cmd("INCR").arg("a2").arg("x").query(&mut c);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("wrong number of arguments"));
    let _: () = c.set("s", "abc").unwrap();
    let err = redis::cmd("INCR")
        .arg("s")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let _: () = c.set("big", i64::MAX.to_string()).unwrap();
    let err = redis::cmd("INCR")
        .arg("big")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");
    // MSET / MGET / EXISTS / DEL / DBSIZE
    let _: () = redis::cmd("MSET")
        .arg("k1")
        .arg("v1")
        .arg("k2")
        .arg("v2")
        .query(&mut c)
        .unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg("k1")
        .arg("nope")
        .arg("k2")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, vec![Some("v1".into()), None, Some("v2".into())]);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg("k1")
            .arg("k2")
            .arg("zz")
            .query::<i64>(&mut c)
            .unwrap(),
        2
    );
    let before: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(
        redis::cmd("DEL")
            .arg("k1")
            .arg("k2")
            .arg("zz")
            .query::<i64>(&mut c)
            .unwrap(),
        2
    );
    assert_eq!(
        redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(),
        before - 2
    );
    let err = redis::cmd("MSET").arg("x").query::<()>(&mut c).unwrap_err();
    assert!(
        err.to_string().contains("wrong number of arguments"),
        "{err}"
    );
}

#[test]
fn large_values_overflow_pages_and_the_limit() {
    let (_d, n) = node();
    let mut c = n.client();
    let v: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = c.set("big", &v).unwrap();
    assert_eq!(c.get::<_, Vec<u8>>("big").unwrap(), v);
    let v2 = vec![7u8; 100_000];
    let _: () = c.set("big", &v2).unwrap(); // replace frees the old chain
    assert_eq!(c.get::<_, Vec<u8>>("big").unwrap(), v2);
    let too_big = vec![1u8; 512 * 1024 + 1];
    let err = c.set::<_, _, ()>("huge", &too_big).unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    assert_eq!(c.get::<_, Option<Vec<u8>>>("huge").unwrap(), None);
    let _: i64 = c.del("big").unwrap();
    assert_eq!(c.get::<_, Option<Vec<u8>>>("big").unwrap(), None);
}

#[test]
fn many_keys_split_pages_and_scan_returns_all_in_order() {
    let (_d, n) = node();
    let mut c = n.client();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("key:{i:05}"))
            .arg(format!("value-{i}-{}", "x".repeat(50)))
            .ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 5000);
    let keys: Vec<String> = c.scan_match::<_, String>("key:0*").unwrap().collect();
    assert_eq!(keys.len(), 5000);
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "SCAN walks the key order");
    assert_eq!(
        c.get::<_, String>("key:04321").unwrap(),
        format!("value-4321-{}", "x".repeat(50))
    );
    let err = redis::cmd("SCAN")
        .arg("987654")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("invalid cursor"), "{err}");
}

/// Sends raw bytes and reads until `lines` reply lines arrived.
fn raw(n: &NodeProc, req: &[u8], lines: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(n.addr()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.iter().filter(|&&b| b == b'\n').count() < lines + 1 {
        let k = s.read(&mut buf).unwrap();
        assert!(
            k > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..k]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn multi_exec_is_one_transaction_and_discard_drops_it() {
    let (_d, n) = node();
    let mut c = n.client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("x", 5)
        .incr("y", 7)
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (5, 7));
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let q: String = redis::cmd("SET").arg("x").arg("100").query(&mut c).unwrap();
    assert_eq!(q, "QUEUED");
    let _: () = redis::cmd("DISCARD").query(&mut c).unwrap();
    assert_eq!(c.get::<_, i64>("x").unwrap(), 5);
    // A command error inside EXEC does not abort the others (Redis
    // semantics). Raw RESP: the redis crate turns an error element into Err.
    let _: () = c.set("s", "text").unwrap();
    let reply = raw(&n, b"MULTI\r\nINCR s\r\nINCR x\r\nEXEC\r\n", 5);
    assert_eq!(
        reply,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR value is not an integer or out of range\r\n:6\r\n"
    );
    // A syntax error while queueing aborts EXEC.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    assert!(redis::cmd("GET").query::<Value>(&mut c).is_err());
    let err = redis::cmd("EXEC").query::<Value>(&mut c).unwrap_err();
    assert!(err.to_string().contains("Transaction discarded"), "{err}");
    assert!(redis::cmd("EXEC")
        .query::<Value>(&mut c)
        .unwrap_err()
        .to_string()
        .contains("without MULTI"));
}

#[test]
fn connection_commands_info_role_config_and_unknown() {
    let (_d, n) = node();
    let mut c = n.client();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    assert_eq!(
        redis::cmd("ECHO")
            .arg("hi")
            .query::<String>(&mut c)
            .unwrap(),
        "hi"
    );
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        redis::cmd("CLIENT")
            .arg("GETNAME")
            .query::<String>(&mut c)
            .unwrap(),
        "tester"
    );
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for field in [
        "role:primary",
        "timeline:1",
        "flush_lsn:",
        "applied_lsn:",
        "connected_standbys:0",
        "# Persistence",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let role: Value = redis::cmd("ROLE").query(&mut c).unwrap();
    let Value::Array(r) = role else { panic!() };
    assert_eq!(r[0], Value::BulkString(b"master".to_vec()));
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("synchronous_commit")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        cfg,
        vec!["synchronous_commit".to_string(), "local".to_string()]
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("synchronous_commit")
        .arg("off")
        .query(&mut c)
        .unwrap();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("synchronous_commit")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg[1], "off");
    assert!(redis::cmd("CONFIG")
        .arg("SET")
        .arg("synchronous_commit")
        .arg("bogus")
        .query::<()>(&mut c)
        .is_err());
    let err = redis::cmd("FOO")
        .arg("bar")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("unknown command 'FOO'"), "{err}");
    let err = redis::cmd("GET").query::<()>(&mut c).unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'get'"),
        "{err}"
    );
    let n_cmds: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(n_cmds > 20);
    assert_eq!(
        redis::cmd("WAIT")
            .arg(0)
            .arg(0)
            .query::<i64>(&mut c)
            .unwrap(),
        0
    );
}

#[test]
fn resp3_hello_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let n = NodeProc::start(&dir.path().join("data"), &["--requirepass", "s3cret"]);
    let out = redis_cli(n.port, &["GET", "x"]);
    assert!(out.contains("NOAUTH"), "{out}");
    let out = redis_cli(n.port, &["-a", "wrong", "--no-auth-warning", "GET", "x"]);
    assert!(out.contains("WRONGPASS"), "{out}");
    let out = redis_cli(
        n.port,
        &["-a", "s3cret", "--no-auth-warning", "SET", "x", "1"],
    );
    assert_eq!(out.trim(), "OK");
    let out = redis_cli(
        n.port,
        &["-3", "-a", "s3cret", "--no-auth-warning", "HELLO", "3"],
    );
    assert!(out.contains("tandem") && out.contains("proto"), "{out}");
    let client = redis::Client::open(format!(
        "redis://:s3cret@127.0.0.1:{}/?protocol=resp3",
        n.port
    ))
    .unwrap();
    let mut c = client.get_connection().unwrap();
    assert_eq!(c.get::<_, Option<String>>("nope").unwrap(), None);
    assert_eq!(c.get::<_, String>("x").unwrap(), "1");
}

#[test]
fn redis_cli_drives_every_command() {
    let (_d, n) = node();
    let p = n.port;
    assert_eq!(redis_cli(p, &["SET", "k", "v"]).trim(), "OK");
    assert_eq!(redis_cli(p, &["GET", "k"]).trim(), "v");
    assert_eq!(redis_cli(p, &["INCRBY", "c", "5"]).trim(), "5");
    assert_eq!(redis_cli(p, &["MSET", "a", "1", "b", "2"]).trim(), "OK");
    assert_eq!(redis_cli(p, &["MGET", "a", "b"]).trim(), "1\n2");
    assert_eq!(redis_cli(p, &["EXISTS", "a", "q"]).trim(), "1");
    assert_eq!(redis_cli(p, &["DBSIZE"]).trim(), "4");
    let keys = redis_cli(p, &["--scan"]);
    assert_eq!(keys.lines().count(), 4, "{keys}");
    assert!(redis_cli(p, &["INFO", "replication"]).contains("role:primary"));
    assert!(redis_cli(p, &["NOPE"]).contains("unknown command"));
    assert_eq!(redis_cli(p, &["DEL", "a", "b"]).trim(), "2");
}

#[test]
fn oversized_and_malformed_requests_get_errors_and_the_node_survives() {
    use std::io::{Read, Write};
    let (_d, n) = node();
    let mut s = std::net::TcpStream::connect(n.addr()).unwrap();
    s.write_all(b"*1\r\n$abc\r\n").unwrap();
    let mut buf = [0u8; 256];
    let k = s.read(&mut buf).unwrap();
    let reply = String::from_utf8_lossy(&buf[..k]);
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    // A bulk longer than the request limit is refused before it is read.
    let mut s = std::net::TcpStream::connect(n.addr()).unwrap();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999\r\n")
        .unwrap();
    let k = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..k]).starts_with("-ERR Protocol error"));
    let mut c = n.client();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let (_d, n) = node();
    let mut c = n.client();
    for i in 0..50 {
        let _: () = c.set(format!("m{i}"), i).unwrap();
    }
    let body = n.scrape_metrics();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "tandem_commits_total",
        "tandem_commit_latency_seconds_bucket",
        "tandem_connections",
        "tandem_buffer_pool_hits_total",
        "tandem_buffer_pool_misses_total",
        "tandem_wal_fsyncs_total",
        "tandem_wal_fsync_latency_seconds_bucket",
        "tandem_wal_batch_bytes_bucket",
        "tandem_wal_bytes_total",
    ] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
    let commits: f64 = body
        .lines()
        .find(|l| l.starts_with("tandem_commits_total"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(commits >= 50.0, "commits {commits}");
}
