//! Goal: corrupted bytes on disk are detected and never served. A bit
//! flip in the last WAL record cuts the log before that transaction and
//! keeps everything earlier; a bit flip in a data page is reported by
//! `tandem verify-pages` and by the node as an error naming the page,
//! while the other pages are still served.
//! Method: real node processes in temp dirs; the test edits the files of
//! a stopped node (`<data>/wal/<segment>`, `<data>/pages`) by finding a
//! known byte pattern it wrote, then restarts the node and queries it.

mod common;

use std::path::{Path, PathBuf};

use common::{verify_pages, NodeProc};
use redis::Commands;

const PAGE_BYTES: usize = 8192;
const LEAF_KIND: u8 = 2;
const KIND_AT: usize = 16;

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The WAL segment files, oldest name first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().len() == 24)
        .collect();
    v.sort();
    v
}

fn earlier_value(i: usize) -> String {
    format!("earlier-{i}-{}", "e".repeat(40))
}

#[test]
fn bit_flip_in_last_wal_record_cuts_only_that_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut n = NodeProc::start(&data, &[]);
    let mut c = n.client();
    for i in 0..300 {
        let _: () = c.set(format!("k{i:04}"), earlier_value(i)).unwrap();
    }
    let last: Vec<u8> = (0..200u32).map(|i| (i * 7 % 251) as u8 | 0x80).collect();
    let _: () = c.set("lastkey", &last).unwrap();
    assert_eq!(c.get::<_, Vec<u8>>("lastkey").unwrap(), last);
    n.kill9();

    // The newest segment holding the value; flip a bit in its last copy.
    let (seg, at) = segments(&data)
        .into_iter()
        .rev()
        .find_map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            find(&bytes, &last).last().map(|&at| (p, at))
        })
        .expect("the last value is in the WAL");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at + 100] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();

    n.spawn();
    let mut c = n.client();
    assert_eq!(c.get::<_, Option<Vec<u8>>>("lastkey").unwrap(), None);
    for i in 0..300 {
        let got: Option<String> = c.get(format!("k{i:04}")).unwrap();
        assert_eq!(got, Some(earlier_value(i)), "k{i:04}");
    }
    assert_eq!(redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap(), 300);
    let log = n.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("end of WAL") && l.contains("Torn") && l.contains("Checksum")),
        "the log does not say the WAL tail was cut:\n{log}"
    );
    // The cut point is where new writes go: they survive another crash.
    let _: () = c.set("after", "cut").unwrap();
    n.kill9();
    n.spawn();
    let mut c = n.client();
    assert_eq!(c.get::<_, String>("after").unwrap(), "cut");
    assert_eq!(c.get::<_, String>("k0299").unwrap(), earlier_value(299));
}

fn page_value(i: usize) -> String {
    format!("pagevalue-{i:05}-{}", "p".repeat(60))
}

/// Leaf pages of a data file holding `needle`.
fn leaf_pages_with(pages: &[u8], needle: &[u8]) -> Vec<usize> {
    pages
        .chunks(PAGE_BYTES)
        .enumerate()
        .filter(|(_, p)| p[KIND_AT] == LEAF_KIND && !find(p, needle).is_empty())
        .map(|(no, _)| no)
        .collect()
}

#[test]
fn bit_flip_in_a_data_page_is_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut n = NodeProc::start(&data, &[]);
    let mut c = n.client();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.set(format!("pk:{i:05}"), page_value(i)).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    assert_eq!(n.terminate(), Some(0), "{}", n.log_text());
    assert_eq!(verify_pages(&data).0, Some(0), "clean before the flip");

    let path = data.join("pages");
    let mut pages = std::fs::read(&path).unwrap();
    let victim = 1500;
    let val = page_value(victim);
    let [bad] = leaf_pages_with(&pages, val.as_bytes())[..] else {
        panic!("pk:{victim:05} is not on exactly one leaf page");
    };
    let healthy = 10;
    let [good] = leaf_pages_with(&pages, page_value(healthy).as_bytes())[..] else {
        panic!("pk:{healthy:05} is not on exactly one leaf page");
    };
    assert_ne!(bad, good, "pick keys far apart");
    let page = &mut pages[bad * PAGE_BYTES..(bad + 1) * PAGE_BYTES];
    let at = find(page, val.as_bytes())[0] + 2; // inside "pagevalue"
    page[at] ^= 0x01; // 'g' -> 'f'
    let corrupted = String::from_utf8(page[at - 2..at - 2 + val.len()].to_vec()).unwrap();
    std::fs::write(&path, &pages).unwrap();

    let (code, out) = verify_pages(&data);
    assert_ne!(code, Some(0), "verify-pages must fail:\n{out}");
    assert!(out.contains(&format!("bad page {bad}:")), "{out}");
    assert!(
        out.contains(", 1 bad"),
        "only the flipped page is bad:\n{out}"
    );

    n.spawn();
    let mut c = n.client();
    let err = c
        .get::<_, Option<String>>(format!("pk:{victim:05}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("page {bad}")), "{err}");
    assert!(
        !err.contains(&corrupted) && !err.contains("pagevaluf"),
        "{err}"
    );
    let got: String = c.get(format!("pk:{healthy:05}")).unwrap();
    assert_eq!(got, page_value(healthy));
    // The node keeps refusing the page on every read, not only the first.
    assert!(c
        .get::<_, Option<String>>(format!("pk:{victim:05}"))
        .is_err());
}
