//! A TCP proxy the test can cut: every connection through it is dropped on
//! `cut()`, as a network fault would drop it mid-request.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
    upstream: Arc<Mutex<Option<String>>>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens now; forwards to the upstream set later with `forward_to`.
    pub fn listen() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            upstream: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
            blocked: Arc::default(),
        };
        let (upstream, connections, stop) = (proxy.upstream.clone(), proxy.connections.clone(), proxy.stop.clone());
        let blocked = proxy.blocked.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if blocked.load(Ordering::Relaxed) {
                    continue;
                }
                let Some(target) = upstream.lock().unwrap().clone() else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut registry = connections.lock().unwrap();
                registry.push(client.try_clone().unwrap());
                registry.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        proxy
    }

    pub fn forward_to(&self, addr: &str) {
        *self.upstream.lock().unwrap() = Some(addr.to_string());
    }

    /// Cuts every connection and refuses new ones, as a network partition would.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::Relaxed);
        self.cut();
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::Relaxed);
    }

    /// Drops every open connection, in both directions.
    pub fn cut(&self) -> usize {
        let connections: Vec<TcpStream> = self.connections.lock().unwrap().drain(..).collect();
        for connection in &connections {
            let _ = connection.shutdown(Shutdown::Both);
        }
        connections.len() / 2
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
