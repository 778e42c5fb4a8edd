//! The kernel's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`, as
//! text read from a host: every socket with its local and remote endpoint and
//! its state. rekindle parses them itself, so an audited host needs no tool
//! (`ss`, `netstat`) beyond `cat`.
//!
//! Owns the text format only. It must not decide which side of a connection
//! is the server, nor map addresses to hosts (that is [`super::deps`]).
//!
//! The kernel prints each address as the 32-bit words of the address in the
//! machine's byte order (`%08X` of a big-endian value). Hosts are read as
//! little-endian, as x86_64 and aarch64 Linux are; a big-endian host (s390x)
//! would read with its address bytes reversed (docs/audit.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The state column, as `include/net/tcp_states.h` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl State {
    fn from_code(code: u8) -> Option<State> {
        Some(match code {
            0x01 => State::Established,
            0x02 => State::SynSent,
            0x03 => State::SynRecv,
            0x04 => State::FinWait1,
            0x05 => State::FinWait2,
            0x06 => State::TimeWait,
            0x07 => State::Close,
            0x08 => State::CloseWait,
            0x09 => State::LastAck,
            0x0A => State::Listen,
            0x0B => State::Closing,
            0x0C => State::NewSynRecv,
            _ => return None,
        })
    }

    /// Whether the socket is (or was, moments ago) one end of a connection
    /// with a peer: every state but `LISTEN` and `CLOSE`. `SYN_SENT` counts
    /// (a host trying to reach a peer that does not answer depends on it),
    /// and so does `TIME_WAIT` (a connection that ended within the last
    /// minute: how short-lived connections show up).
    pub fn has_peer(self) -> bool {
        !matches!(self, State::Listen | State::Close)
    }
}

/// One row of a socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Socket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: State,
}

/// Where a table did not parse: line and column (1-based) in the text read,
/// and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every socket in `text`: the output of `cat /proc/net/tcp /proc/net/tcp6`
/// (either or both tables, each with its header line). IPv4-mapped IPv6
/// addresses (`::ffff:10.0.0.1`) come back as the IPv4 addresses they are.
pub fn parse(text: &str) -> Result<Vec<Socket>, ParseError> {
    let mut sockets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("sl ") {
            continue;
        }
        sockets.push(parse_row(line).map_err(|(column, message)| ParseError {
            line: n + 1,
            column,
            message,
        })?);
    }
    Ok(sockets)
}

/// The fields of a row with the column each starts at.
fn fields(line: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = None;
    let mut out = Vec::new();
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s + 1, &line[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s + 1, &line[s..]));
    }
    out.into_iter()
}

fn parse_row(line: &str) -> Result<Socket, (usize, String)> {
    let mut f = fields(line);
    let end = line.len() + 1;
    let missing = |what: &str| (end, format!("expected {what}"));
    let (col, slot) = f.next().ok_or_else(|| missing("a slot number"))?;
    if !slot.ends_with(':') || slot[..slot.len() - 1].parse::<u64>().is_err() {
        return Err((
            col,
            format!("expected a slot number like `0:`, found `{slot}`"),
        ));
    }
    let (lcol, local) = f.next().ok_or_else(|| missing("a local address"))?;
    let local = endpoint(local).map_err(|m| (lcol, m))?;
    let (rcol, remote) = f.next().ok_or_else(|| missing("a remote address"))?;
    let remote = endpoint(remote).map_err(|m| (rcol, m))?;
    let (scol, state) = f.next().ok_or_else(|| missing("a state"))?;
    let state = u8::from_str_radix(state, 16)
        .ok()
        .filter(|_| state.len() == 2)
        .and_then(State::from_code)
        .ok_or_else(|| {
            (
                scol,
                format!("expected a TCP state (01..0C), found `{state}`"),
            )
        })?;
    Ok(Socket {
        local,
        remote,
        state,
    })
}

/// `0100007F:0016` (IPv4) or 32 hex digits and a port (IPv6).
fn endpoint(text: &str) -> Result<SocketAddr, String> {
    let bad = || format!("expected an address like `0100007F:0016`, found `{text}`");
    let (addr, port) = text.split_once(':').ok_or_else(bad)?;
    if port.len() != 4 {
        return Err(bad());
    }
    let port = u16::from_str_radix(port, 16).map_err(|_| bad())?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr).ok_or_else(bad)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&addr[i * 8..i * 8 + 8]).ok_or_else(bad)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return Err(bad()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// One 32-bit word as the kernel prints it on a little-endian host: the
/// network-order bytes of the address, read as a native integer.
fn word(hex: &str) -> Option<[u8; 4]> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(u32::to_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this machine (Debian 12, x86_64): `cat /proc/net/tcp /proc/net/tcp6`
    /// with sshd listening on 127.0.0.1:22 and ::1:22 and one connection to it.
    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 0100007F:A2C4 01 00000000:00000000 02:00053E28 00000000     0        0 23999 4 0000000000000000 20 4 29 10 -1
   2: 0200A8C0:D431 0A00A8C0:1538 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23457 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000200A8C0:1F90 0000000000000000FFFF00000300A8C0:C350 01 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 20 4 30 10 -1
   2: 000080FE00000000FF005450563412FE:0016 000080FE00000000FF005450013412FE:E2A0 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0
";

    fn sock(local: &str, remote: &str, state: State) -> Socket {
        Socket {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
        }
    }

    #[test]
    fn reads_both_tables_as_the_kernel_prints_them() {
        let got = parse(SAMPLE).unwrap();
        assert_eq!(
            got,
            vec![
                sock("127.0.0.1:22", "0.0.0.0:0", State::Listen),
                sock("127.0.0.1:22", "127.0.0.1:41668", State::Established),
                sock("192.168.0.2:54321", "192.168.0.10:5432", State::TimeWait),
                sock("[::1]:22", "[::]:0", State::Listen),
                // IPv4-mapped: an IPv6 socket serving an IPv4 peer.
                sock("192.168.0.2:8080", "192.168.0.3:50000", State::Established),
                sock(
                    "[fe80::5054:ff:fe12:3456]:22",
                    "[fe80::5054:ff:fe12:3401]:58016",
                    State::Established
                ),
            ]
        );
    }

    #[test]
    fn only_connected_states_have_a_peer() {
        assert!(State::Established.has_peer());
        assert!(State::SynSent.has_peer());
        assert!(State::TimeWait.has_peer());
        assert!(!State::Listen.has_peer());
        assert!(!State::Close.has_peer());
    }

    #[test]
    fn a_bad_row_names_its_line_and_column() {
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:0016 0000000:0000 0A\n";
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.column), (2, 21), "{e}");
        assert!(e.message.contains("`0000000:0000`"), "{e}");
        let e = parse("   0: 0100007F:0016 00000000:0000 0Z 0\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 35), "{e}");
        let e = parse("   0: 0100007F:0016\n").unwrap_err();
        assert!(e.message.contains("remote address"), "{e}");
        let e = parse("hello world\n").unwrap_err();
        assert!(e.message.contains("slot number"), "{e}");
    }

    /// The kernel is the judge: a listener and a connection this process
    /// opens show in this machine's own `/proc/net/tcp` as we parse it.
    #[test]
    fn this_kernels_table_shows_our_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let ours = client.local_addr().unwrap();
        let mut text = std::fs::read_to_string("/proc/net/tcp").unwrap();
        text.push_str(&std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default());
        let table = parse(&text).unwrap();
        assert!(table.contains(&Socket {
            local: server,
            remote: "0.0.0.0:0".parse().unwrap(),
            state: State::Listen
        }));
        assert!(table.contains(&Socket {
            local: ours,
            remote: server,
            state: State::Established
        }));
        assert!(table.contains(&Socket {
            local: server,
            remote: ours,
            state: State::Established
        }));
    }

    #[test]
    fn an_empty_table_has_no_sockets() {
        assert_eq!(parse("").unwrap(), vec![]);
        let header = SAMPLE.lines().next().unwrap();
        assert_eq!(parse(header).unwrap(), vec![]);
    }
}
