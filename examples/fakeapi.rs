//! The tests' fake Kubernetes API server (tests/fakeapi) as a program, for benchmarks:
//! prints its URL and serves until killed. `GET /_fake/requests` answers the number of
//! requests (and of writes) since the previous such request.

#[path = "../tests/fakeapi/mod.rs"]
mod fakeapi;

fn main() {
    let api = fakeapi::FakeApi::start();
    println!("{}", api.url);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
