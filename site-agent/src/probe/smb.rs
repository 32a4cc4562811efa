//! `smb`: an SMB2 NEGOTIATE (MS-SMB2 2.2.3) over direct TCP. A valid NEGOTIATE response
//! proves the SMB server answers; it does not prove a share is there (a deeper check
//! reaching TREE_CONNECT does that).

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use super::io::{connect, io_failure, read_exact};
use super::verdict::Verdict;

/// The dialects offered: SMB 2.0.2, 2.1, 3.0, 3.0.2.
const DIALECTS: [u16; 4] = [0x0202, 0x0210, 0x0300, 0x0302];

/// A NEGOTIATE request with its 4-octet direct-TCP header.
pub fn negotiate_request() -> Vec<u8> {
    let mut smb = Vec::with_capacity(108);
    smb.extend_from_slice(b"\xfeSMB");
    smb.extend_from_slice(&64u16.to_le_bytes()); // StructureSize
    smb.extend_from_slice(&0u16.to_le_bytes()); // CreditCharge
    smb.extend_from_slice(&0u32.to_le_bytes()); // Status
    smb.extend_from_slice(&0u16.to_le_bytes()); // Command: NEGOTIATE
    smb.extend_from_slice(&1u16.to_le_bytes()); // CreditRequest
    smb.extend_from_slice(&[0u8; 4 + 4 + 8 + 4 + 4 + 8 + 16]); // Flags .. Signature
    smb.extend_from_slice(&36u16.to_le_bytes()); // body StructureSize
    smb.extend_from_slice(&(DIALECTS.len() as u16).to_le_bytes());
    smb.extend_from_slice(&1u16.to_le_bytes()); // SecurityMode: signing enabled
    smb.extend_from_slice(&0u16.to_le_bytes()); // Reserved
    smb.extend_from_slice(&0u32.to_le_bytes()); // Capabilities
    smb.extend_from_slice(b"PorticoSiteAgent"); // ClientGuid (16 octets)
    smb.extend_from_slice(&0u64.to_le_bytes()); // ClientStartTime
    for dialect in DIALECTS {
        smb.extend_from_slice(&dialect.to_le_bytes());
    }
    let mut framed = (smb.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&smb);
    framed
}

/// Judges a NEGOTIATE response (without the direct-TCP header); returns the dialect.
pub fn judge_response(message: &[u8]) -> Result<u16, String> {
    if message.len() < 64 + 6 || &message[..4] != b"\xfeSMB" {
        return Err("not an SMB2 response".into());
    }
    let status = u32::from_le_bytes([message[8], message[9], message[10], message[11]]);
    if status != 0 {
        return Err(format!("NEGOTIATE status 0x{status:08x}"));
    }
    let command = u16::from_le_bytes([message[12], message[13]]);
    if command != 0 {
        return Err(format!("response to command {command}, not NEGOTIATE"));
    }
    let structure = u16::from_le_bytes([message[64], message[65]]);
    if structure != 65 {
        return Err(format!("NEGOTIATE response StructureSize {structure}"));
    }
    Ok(u16::from_le_bytes([message[68], message[69]]))
}

/// Negotiates with `target`.
pub async fn probe(target: SocketAddr) -> Verdict {
    let started = Instant::now();
    let result = async {
        let mut stream = connect(target).await?;
        stream
            .write_all(&negotiate_request())
            .await
            .map_err(|e| io_failure("write", &e))?;
        let mut header = [0u8; 4];
        read_exact(&mut stream, &mut header).await?;
        let len = (u32::from_be_bytes(header) & 0x00FF_FFFF) as usize;
        if len > 65_536 {
            return Err(format!("SMB message of {len} octets"));
        }
        let mut message = vec![0u8; len];
        read_exact(&mut stream, &mut message).await?;
        judge_response(&message).map(|_| ())
    }
    .await;
    match result {
        Ok(()) => Verdict::ok(started),
        Err(reason) => Verdict::fail(started, reason),
    }
}

/// NTLMSSP flags for an anonymous session: Unicode, request target, NTLM, always sign,
/// extended session security, anonymous, 128 and 56 bit.
const NTLM_FLAGS: u32 = 0x0000_0001
    | 0x0000_0004
    | 0x0000_0200
    | 0x0000_0800
    | 0x0000_8000
    | 0x0008_0000
    | 0x2000_0000
    | 0x8000_0000;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xC000_0016;

/// An SMB2 header for `command` with `message_id` and `session_id`.
fn header(command: u16, message_id: u64, session_id: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(b"\xfeSMB");
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // CreditCharge
    h.extend_from_slice(&0u32.to_le_bytes()); // Status
    h.extend_from_slice(&command.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // CreditRequest
    h.extend_from_slice(&0u32.to_le_bytes()); // Flags
    h.extend_from_slice(&0u32.to_le_bytes()); // NextCommand
    h.extend_from_slice(&message_id.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // Reserved (ProcessId)
    h.extend_from_slice(&0u32.to_le_bytes()); // TreeId
    h.extend_from_slice(&session_id.to_le_bytes());
    h.extend_from_slice(&[0u8; 16]); // Signature
    h
}

fn framed(message: Vec<u8>) -> Vec<u8> {
    let mut out = (message.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&message);
    out
}

/// SESSION_SETUP carrying `token` (raw NTLMSSP).
fn session_setup(message_id: u64, session_id: u64, token: &[u8]) -> Vec<u8> {
    let mut m = header(1, message_id, session_id);
    m.extend_from_slice(&25u16.to_le_bytes()); // StructureSize
    m.push(0); // Flags
    m.push(1); // SecurityMode: signing enabled
    m.extend_from_slice(&0u32.to_le_bytes()); // Capabilities
    m.extend_from_slice(&0u32.to_le_bytes()); // Channel
    m.extend_from_slice(&(64u16 + 24).to_le_bytes()); // SecurityBufferOffset
    m.extend_from_slice(&(token.len() as u16).to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes()); // PreviousSessionId
    m.extend_from_slice(token);
    framed(m)
}

/// NTLMSSP NEGOTIATE_MESSAGE with no domain and no workstation.
fn ntlm_negotiate() -> Vec<u8> {
    let mut t = b"NTLMSSP\0".to_vec();
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&NTLM_FLAGS.to_le_bytes());
    t.extend_from_slice(&[0u8; 16]); // DomainNameFields, WorkstationFields
    t
}

/// NTLMSSP AUTHENTICATE_MESSAGE of the anonymous user (a one-octet LM response, nothing
/// else).
fn ntlm_anonymous_authenticate() -> Vec<u8> {
    const FIXED: u32 = 64;
    let mut t = b"NTLMSSP\0".to_vec();
    t.extend_from_slice(&3u32.to_le_bytes());
    let field = |t: &mut Vec<u8>, len: u16, offset: u32| {
        t.extend_from_slice(&len.to_le_bytes());
        t.extend_from_slice(&len.to_le_bytes());
        t.extend_from_slice(&offset.to_le_bytes());
    };
    field(&mut t, 1, FIXED); // LmChallengeResponse: Z(1)
    field(&mut t, 0, FIXED + 1); // NtChallengeResponse
    field(&mut t, 0, FIXED + 1); // DomainName
    field(&mut t, 0, FIXED + 1); // UserName
    field(&mut t, 0, FIXED + 1); // Workstation
    field(&mut t, 0, FIXED + 1); // EncryptedRandomSessionKey
    t.extend_from_slice(&NTLM_FLAGS.to_le_bytes());
    t.push(0); // the LM response
    t
}

/// TREE_CONNECT to `\\server\share`.
fn tree_connect(message_id: u64, session_id: u64, unc: &str) -> Vec<u8> {
    let path: Vec<u8> = unc.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut m = header(3, message_id, session_id);
    m.extend_from_slice(&9u16.to_le_bytes()); // StructureSize
    m.extend_from_slice(&0u16.to_le_bytes()); // Flags
    m.extend_from_slice(&(64u16 + 8).to_le_bytes()); // PathOffset
    m.extend_from_slice(&(path.len() as u16).to_le_bytes());
    m.extend_from_slice(&path);
    framed(m)
}

/// Reads one direct-TCP SMB2 message.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Result<Vec<u8>, String> {
    let mut header = [0u8; 4];
    read_exact(stream, &mut header).await?;
    let len = (u32::from_be_bytes(header) & 0x00FF_FFFF) as usize;
    if !(64..=65_536).contains(&len) {
        return Err(format!("SMB message of {len} octets"));
    }
    let mut message = vec![0u8; len];
    read_exact(stream, &mut message).await?;
    if &message[..4] != b"\xfeSMB" {
        return Err("not an SMB2 response".into());
    }
    Ok(message)
}

fn status_of(message: &[u8]) -> u32 {
    u32::from_le_bytes([message[8], message[9], message[10], message[11]])
}

/// Names the NT status codes a share check meets.
fn status_name(status: u32) -> String {
    match status {
        0xC000_00CC => "NT_STATUS_BAD_NETWORK_NAME (no such share)".into(),
        0xC000_0022 => "NT_STATUS_ACCESS_DENIED".into(),
        0xC000_006D => "NT_STATUS_LOGON_FAILURE".into(),
        0xC000_0016 => "NT_STATUS_MORE_PROCESSING_REQUIRED".into(),
        other => format!("NT status 0x{other:08x}"),
    }
}

/// The deep check: NEGOTIATE, an anonymous SESSION_SETUP (NTLMSSP), then TREE_CONNECT to
/// `share` on `server` (the UNC host name). Proves the share is there, not only the server.
pub async fn deep_probe(target: SocketAddr, server: &str, share: &str) -> Verdict {
    let started = Instant::now();
    let result = async {
        let mut stream = connect(target).await?;
        stream
            .write_all(&negotiate_request())
            .await
            .map_err(|e| io_failure("write", &e))?;
        judge_response(&read_message(&mut stream).await?)?;
        stream
            .write_all(&session_setup(1, 0, &ntlm_negotiate()))
            .await
            .map_err(|e| io_failure("write", &e))?;
        let challenge = read_message(&mut stream).await?;
        if status_of(&challenge) != STATUS_MORE_PROCESSING_REQUIRED {
            return Err(format!(
                "SESSION_SETUP: {}",
                status_name(status_of(&challenge))
            ));
        }
        let session_id = u64::from_le_bytes(
            challenge[40..48]
                .try_into()
                .map_err(|_| "short SMB header")?,
        );
        stream
            .write_all(&session_setup(
                2,
                session_id,
                &ntlm_anonymous_authenticate(),
            ))
            .await
            .map_err(|e| io_failure("write", &e))?;
        let session = read_message(&mut stream).await?;
        if status_of(&session) != 0 {
            return Err(format!(
                "anonymous SESSION_SETUP: {}",
                status_name(status_of(&session))
            ));
        }
        stream
            .write_all(&tree_connect(
                3,
                session_id,
                &format!("\\\\{server}\\{share}"),
            ))
            .await
            .map_err(|e| io_failure("write", &e))?;
        let tree = read_message(&mut stream).await?;
        match status_of(&tree) {
            0 => Ok(()),
            status => Err(format!("TREE_CONNECT {share}: {}", status_name(status))),
        }
    }
    .await;
    match result {
        Ok(()) => Verdict::ok(started),
        Err(reason) => Verdict::fail(started, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_matches_the_documented_bytes() {
        let request = negotiate_request();
        assert_eq!(
            &request[..4],
            &[0, 0, 0, 0x6c],
            "108 octets after the header"
        );
        assert_eq!(request.len(), 112);
        assert_eq!(&request[4..8], b"\xfeSMB");
        assert_eq!(&request[68..70], &36u16.to_le_bytes());
        assert_eq!(
            &request[104..112],
            &[0x02, 0x02, 0x10, 0x02, 0x00, 0x03, 0x02, 0x03]
        );
    }

    fn response(status: u32, command: u16, structure: u16) -> Vec<u8> {
        let mut m = b"\xfeSMB".to_vec();
        m.extend_from_slice(&64u16.to_le_bytes());
        m.extend_from_slice(&0u16.to_le_bytes());
        m.extend_from_slice(&status.to_le_bytes());
        m.extend_from_slice(&command.to_le_bytes());
        m.resize(64, 0);
        m.extend_from_slice(&structure.to_le_bytes());
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(&0x0302u16.to_le_bytes());
        m
    }

    #[test]
    fn golden_responses() {
        assert_eq!(judge_response(&response(0, 0, 65)), Ok(0x0302));
        assert!(
            judge_response(&response(0xC000_0022, 0, 65))
                .unwrap_err()
                .contains("0xc0000022")
        );
        assert!(
            judge_response(&response(0, 1, 65))
                .unwrap_err()
                .contains("command 1")
        );
        assert!(
            judge_response(&response(0, 0, 9))
                .unwrap_err()
                .contains("StructureSize 9")
        );
        assert!(
            judge_response(b"\xffSMB")
                .unwrap_err()
                .contains("not an SMB2")
        );
    }
}
