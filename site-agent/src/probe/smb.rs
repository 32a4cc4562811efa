//! `smb`: an SMB2 NEGOTIATE (MS-SMB2 2.2.3) over direct TCP. A valid NEGOTIATE response
//! proves the SMB server answers; it does not prove a share is there (a deeper check
//! reaching TREE_CONNECT does that).

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use super::{Verdict, connect, read_exact};

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
            .map_err(|e| format!("write: {e}"))?;
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
