//! The yardstick for ingest: the least a durable webhook receiver can do. hyper answers each
//! request after checking `X-Webhook-Signature` (HMAC-SHA256 over the raw body) and after the
//! body is committed to SQLite (WAL, `synchronous = FULL`) by one writer thread that takes every
//! request waiting and commits them in one transaction (group commit). No parsing, no
//! deduplication beyond a unique key, no processing: sigex's ingest is measured against it in the
//! same run, so the ratio is always at hand.

use super::gen::{answer, Served};
use hmac::{Hmac, Mac};
use libsqlite3_sys as ffi;
use sha2::{Digest, Sha256};
use std::ffi::{CStr, CString};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// One request waiting for its commit: the body's key, the body, and where the answer goes.
type Pending = ([u8; 32], Vec<u8>, oneshot::Sender<bool>);

pub struct MinimalReceiver {
    served: Served,
}

impl MinimalReceiver {
    pub fn start(db: &Path, secret: &str) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>();
        let db = db.to_owned();
        std::thread::Builder::new()
            .name("minimal-writer".into())
            .spawn(move || writer(&db, rx))
            .unwrap();
        let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        let served = Served::start(
            "minimal",
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (tx, mut mac) = (tx.clone(), key.clone());
                async move {
                    use http_body_util::BodyExt;
                    let signature = req
                        .headers()
                        .get("x-webhook-signature")
                        .and_then(|v| hex::decode(v.as_bytes()).ok());
                    let body = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes().to_vec(),
                        Err(_) => return Ok(answer(400)),
                    };
                    mac.update(&body);
                    let valid = signature.is_some_and(|s| mac.verify_slice(&s).is_ok());
                    if !valid {
                        return Ok::<_, std::convert::Infallible>(answer(401));
                    }
                    let key: [u8; 32] = Sha256::digest(&body).into();
                    let (done, committed) = oneshot::channel();
                    if tx.send((key, body, done)).is_err() {
                        return Ok(answer(503));
                    }
                    Ok(answer(if committed.await == Ok(true) {
                        200
                    } else {
                        503
                    }))
                }
            }),
        );
        Self { served }
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }
}

/// The raw SQLite connection of the writer thread.
struct Db(*mut ffi::sqlite3);

impl Db {
    fn open(path: &Path) -> Self {
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let mut db = std::ptr::null_mut();
        // SAFETY: `path` is a valid C string and `db` receives the handle.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK, "open the minimal receiver's database");
        Self(db)
    }

    fn exec(&self, sql: &str) -> bool {
        let sql = CString::new(sql).unwrap();
        // SAFETY: a live handle and a valid C string; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.0,
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            // SAFETY: sqlite3_errmsg returns a C string owned by the handle.
            let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
            eprintln!(
                "minimal receiver: {}: {}",
                sql.to_string_lossy(),
                msg.to_string_lossy()
            );
        }
        rc == ffi::SQLITE_OK
    }
}

fn writer(path: &Path, rx: mpsc::Receiver<Pending>) {
    let db = Db::open(path);
    assert!(db.exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, body BLOB NOT NULL);"
    ));
    let sql =
        CString::new("INSERT INTO inbox (key, body) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")
            .unwrap();
    let mut insert = std::ptr::null_mut();
    // SAFETY: a live handle, a valid C string; `insert` receives the statement.
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(db.0, sql.as_ptr(), -1, &mut insert, std::ptr::null_mut())
    };
    assert_eq!(rc, ffi::SQLITE_OK);
    let mut batch: Vec<Pending> = Vec::with_capacity(512);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut ok = db.exec("BEGIN IMMEDIATE");
        for (key, body, _) in &batch {
            if !ok {
                break;
            }
            // SAFETY: `insert` is a live statement of `db`; SQLITE_TRANSIENT makes SQLite copy the
            // bytes before the call returns.
            unsafe {
                ffi::sqlite3_bind_blob(insert, 1, key.as_ptr().cast(), 32, ffi::SQLITE_TRANSIENT());
                ffi::sqlite3_bind_blob(
                    insert,
                    2,
                    body.as_ptr().cast(),
                    body.len() as i32,
                    ffi::SQLITE_TRANSIENT(),
                );
                ok = ffi::sqlite3_step(insert) == ffi::SQLITE_DONE;
                ffi::sqlite3_reset(insert);
            }
        }
        ok = ok && db.exec("COMMIT");
        if !ok {
            db.exec("ROLLBACK");
        }
        for (_, _, done) in batch.drain(..) {
            let _ = done.send(ok);
        }
    }
    // SAFETY: the statement and the handle are not used after this.
    unsafe {
        ffi::sqlite3_finalize(insert);
        ffi::sqlite3_close(db.0);
    }
}
