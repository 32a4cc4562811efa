//! `nfs`: an ONC RPC NULL call (RFC 5531) to the NFS program over TCP with record marking.
//! It proves the RPC layer serves NFS of the expected version; PROG_UNAVAIL and
//! PROG_MISMATCH are failures.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use super::io::{connect, io_failure, read_exact};
use super::verdict::Verdict;

/// The NFS program number.
pub const NFS_PROGRAM: u32 = 100_003;

/// The NULL call: record mark, xid, CALL, RPC version 2, program, version, procedure 0,
/// AUTH_NONE credential and verifier.
pub fn null_call(xid: u32, program: u32, version: u32) -> Vec<u8> {
    let words = [xid, 0, 2, program, version, 0, 0, 0, 0, 0];
    let mut call = (0x8000_0000u32 | 40).to_be_bytes().to_vec();
    for word in words {
        call.extend_from_slice(&word.to_be_bytes());
    }
    call
}

/// Judges a reply record (without its record mark) to the call `xid`.
pub fn judge_reply(xid: u32, reply: &[u8]) -> Result<(), String> {
    accepted_results(xid, reply).map(|_| ())
}

/// Checks that a reply accepted the call `xid` with SUCCESS; returns where its results start.
fn accepted_results(xid: u32, reply: &[u8]) -> Result<usize, String> {
    let word = |i: usize| -> Result<u32, String> {
        reply
            .get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "short RPC reply".to_owned())
    };
    if word(0)? != xid {
        return Err("RPC reply to another call".into());
    }
    if word(1)? != 1 {
        return Err("not an RPC reply".into());
    }
    match word(2)? {
        0 => {}
        1 => return Err("RPC call denied".into()),
        other => return Err(format!("RPC reply status {other}")),
    }
    // Accepted: verifier (flavor, length, body), then the accept status.
    let verifier_len = word(4)? as usize;
    let status_at = 5 + verifier_len.div_ceil(4);
    match word(status_at)? {
        0 => Ok((status_at + 1) * 4),
        1 => Err("PROG_UNAVAIL: no NFS service".into()),
        2 => Err(format!(
            "PROG_MISMATCH: versions {}..{} only",
            word(status_at + 1).unwrap_or(0),
            word(status_at + 2).unwrap_or(0)
        )),
        3 => Err("PROC_UNAVAIL".into()),
        4 => Err("GARBAGE_ARGS".into()),
        5 => Err("SYSTEM_ERR".into()),
        other => Err(format!("RPC accept status {other}")),
    }
}

/// Sends NULL to `program`/`version` at `target` and checks the reply.
pub async fn probe(target: SocketAddr, program: u32, version: u32) -> Verdict {
    let started = Instant::now();
    let result = async {
        let mut stream = connect(target).await?;
        let xid = 0x5054_0000 | (started.elapsed().subsec_nanos() & 0xFFFF);
        stream
            .write_all(&null_call(xid, program, version))
            .await
            .map_err(|e| io_failure("write", &e))?;
        let mut mark = [0u8; 4];
        read_exact(&mut stream, &mut mark).await?;
        let len = (u32::from_be_bytes(mark) & 0x7FFF_FFFF) as usize;
        if len > 4096 {
            return Err(format!("RPC record of {len} octets"));
        }
        let mut reply = vec![0u8; len];
        read_exact(&mut stream, &mut reply).await?;
        judge_reply(xid, &reply)
    }
    .await;
    match result {
        Ok(()) => Verdict::ok(started),
        Err(reason) => Verdict::fail(started, reason),
    }
}

/// The MOUNT program (version 3).
pub const MOUNT_PROGRAM: u32 = 100_005;

/// XDR opaque or string: length, bytes, padding to four octets.
fn xdr_opaque(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out.resize(out.len() + (4 - bytes.len() % 4) % 4, 0);
}

/// A call with AUTH_UNIX credentials (uid 0, gid 0), which servers ask of MOUNT.
pub fn unix_call(xid: u32, program: u32, version: u32, procedure: u32, args: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for word in [xid, 0, 2, program, version, procedure, 1] {
        body.extend_from_slice(&word.to_be_bytes());
    }
    let mut credential = 0u32.to_be_bytes().to_vec(); // stamp
    xdr_opaque(b"portico-site-agent", &mut credential);
    credential.extend_from_slice(&[0u8; 12]); // uid 0, gid 0, no other groups
    xdr_opaque(&credential, &mut body);
    body.extend_from_slice(&[0u8; 8]); // AUTH_NONE verifier
    body.extend_from_slice(args);
    let mut call = (0x8000_0000u32 | body.len() as u32).to_be_bytes().to_vec();
    call.extend_from_slice(&body);
    call
}

/// Sends one call and returns the reply's results (after an accepted SUCCESS).
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    xid: u32,
    call: &[u8],
) -> Result<Vec<u8>, String> {
    stream
        .write_all(call)
        .await
        .map_err(|e| io_failure("write", &e))?;
    let mut record = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        read_exact(stream, &mut mark).await?;
        let mark = u32::from_be_bytes(mark);
        let len = (mark & 0x7FFF_FFFF) as usize;
        if record.len() + len > 1 << 20 {
            return Err("RPC reply too large".into());
        }
        let start = record.len();
        record.resize(start + len, 0);
        read_exact(stream, &mut record[start..]).await?;
        if mark & 0x8000_0000 != 0 {
            break;
        }
    }
    let at = accepted_results(xid, &record)?;
    Ok(record[at..].to_vec())
}

/// The deep check of an NFSv3 export: MOUNT the export path (MOUNT protocol on
/// `mount_target`), then GETATTR its root file handle on `target`. Proves the export is
/// there and the file system answers, not only the RPC layer.
pub async fn deep_probe(target: SocketAddr, mount_target: SocketAddr, export: &str) -> Verdict {
    let started = Instant::now();
    let result = async {
        let xid = 0x5055_0000 | (started.elapsed().subsec_nanos() & 0xFFFF);
        let mut args = Vec::new();
        xdr_opaque(export.as_bytes(), &mut args);
        let mut mount = connect(mount_target).await?;
        let reply = exchange(&mut mount, xid, &unix_call(xid, MOUNT_PROGRAM, 3, 1, &args)).await?;
        let status = reply
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("short MNT reply")?;
        if status != 0 {
            return Err(format!("MOUNT {export}: {}", mount_status(status)));
        }
        let handle_len = reply
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("short MNT reply")?;
        let handle = reply.get(8..8 + handle_len).ok_or("short MNT reply")?;
        let mut args = Vec::new();
        xdr_opaque(handle, &mut args);
        let mut nfs = if mount_target == target {
            mount
        } else {
            connect(target).await?
        };
        let xid = xid + 1;
        let reply = exchange(&mut nfs, xid, &unix_call(xid, NFS_PROGRAM, 3, 1, &args)).await?;
        let status = reply
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("short GETATTR reply")?;
        if status != 0 {
            return Err(format!("GETATTR of the export root: NFS3 status {status}"));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Verdict::ok(started),
        Err(reason) => Verdict::fail(started, reason),
    }
}

fn mount_status(status: u32) -> String {
    match status {
        1 => "MNT3ERR_PERM".into(),
        2 => "MNT3ERR_NOENT (no such export)".into(),
        5 => "MNT3ERR_IO".into(),
        13 => "MNT3ERR_ACCES (not allowed)".into(),
        20 => "MNT3ERR_NOTDIR".into(),
        22 => "MNT3ERR_INVAL".into(),
        63 => "MNT3ERR_NAMETOOLONG".into(),
        10004 => "MNT3ERR_NOTSUPP".into(),
        10006 => "MNT3ERR_SERVERFAULT".into(),
        other => format!("mount status {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(xid: u32, words: &[u32]) -> Vec<u8> {
        std::iter::once(xid)
            .chain(words.iter().copied())
            .flat_map(u32::to_be_bytes)
            .collect()
    }

    #[test]
    fn the_null_call_matches_the_wire_format() {
        let call = null_call(7, NFS_PROGRAM, 3);
        assert_eq!(call.len(), 44);
        assert_eq!(&call[..4], &[0x80, 0, 0, 40]);
        assert_eq!(&call[4..8], &7u32.to_be_bytes());
        assert_eq!(&call[16..20], &100_003u32.to_be_bytes());
        assert_eq!(&call[20..24], &3u32.to_be_bytes());
        assert!(call[24..].iter().all(|b| *b == 0));
    }

    #[test]
    fn golden_replies() {
        let cases: Vec<(Vec<u8>, Result<(), &str>)> = vec![
            (reply(9, &[1, 0, 0, 0, 0]), Ok(())),
            (reply(9, &[1, 0, 0, 0, 1]), Err("PROG_UNAVAIL")),
            (
                reply(9, &[1, 0, 0, 0, 2, 4, 4]),
                Err("PROG_MISMATCH: versions 4..4"),
            ),
            (reply(9, &[1, 1, 0]), Err("denied")),
            (reply(8, &[1, 0, 0, 0, 0]), Err("another call")),
            (reply(9, &[0, 0]), Err("not an RPC reply")),
            (reply(9, &[1, 0]), Err("short")),
            (reply(9, &[1, 0, 1, 8, 0, 0, 0]), Ok(())),
        ];
        for (bytes, expected) in cases {
            match (judge_reply(9, &bytes), expected) {
                (Ok(()), Ok(())) => {}
                (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{got} vs {fragment}"),
                (got, expected) => panic!("{bytes:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
