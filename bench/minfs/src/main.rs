//! minfs: the floor for valuesfs's read benchmarks. Loads a directory tree into memory and
//! serves it read-only over FUSE with the same kernel-facing settings valuesfs uses
//! (FOPEN_KEEP_CACHE, 1 s attr/entry TTL, default_permissions, 4 session threads,
//! 1 MiB max readahead). Everything else is as small as FUSE allows.
//!
//! Usage: minfs SOURCE_DIR MOUNTPOINT   (stays in the foreground; unmount with fusermount3 -u)

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, Request,
};

const TTL: Duration = Duration::from_secs(1);

enum Node {
    Dir { parent: u64, children: Vec<(OsString, u64)>, index: HashMap<OsString, u64> },
    File(Vec<u8>),
}

struct MinFs {
    nodes: Vec<Node>, // index = ino - 1
    mtime: SystemTime,
    uid: u32,
    gid: u32,
}

impl MinFs {
    fn load(src: &Path) -> std::io::Result<MinFs> {
        let mut fs = MinFs {
            nodes: vec![Node::Dir { parent: 1, children: vec![], index: HashMap::new() }],
            mtime: SystemTime::now(),
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
        };
        fs.load_dir(src, 1)?;
        Ok(fs)
    }

    fn load_dir(&mut self, dir: &Path, ino: u64) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ft = e.file_type()?;
            let child = self.nodes.len() as u64 + 1;
            if ft.is_dir() {
                self.nodes.push(Node::Dir { parent: ino, children: vec![], index: HashMap::new() });
                self.load_dir(&e.path(), child)?;
            } else if ft.is_file() {
                self.nodes.push(Node::File(std::fs::read(e.path())?));
            } else {
                continue;
            }
            if let Node::Dir { children, index, .. } = &mut self.nodes[ino as usize - 1] {
                children.push((e.file_name(), child));
                index.insert(e.file_name(), child);
            }
        }
        Ok(())
    }

    fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.nodes.get((ino.0 as usize).wrapping_sub(1))
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, perm, nlink) = match &self.nodes[ino as usize - 1] {
            Node::Dir { .. } => (FileType::Directory, 0, 0o755, 2),
            Node::File(d) => (FileType::RegularFile, d.len() as u64, 0o644, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for MinFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.node(parent) {
            Some(Node::Dir { index, .. }) => match index.get(name) {
                Some(&ino) => reply.entry(&TTL, &self.attr(ino), Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Some(Node::File(_)) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Some(_) => reply.attr(&TTL, &self.attr(ino.0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.node(ino) {
            Some(Node::File(_)) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Some(Node::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.node(ino) {
            Some(Node::File(d)) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                reply.data(&d[start..end]);
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(Node::Dir { parent, children, .. }) = self.node(ino) else {
            return reply.error(Errno::ENOTDIR);
        };
        let dots = [(ino.0, OsStr::new(".")), (*parent, OsStr::new(".."))];
        let all = dots.into_iter().chain(children.iter().map(|(n, i)| (*i, n.as_os_str())));
        for (i, (child, name)) in all.enumerate().skip(offset as usize) {
            let kind = match self.nodes[child as usize - 1] {
                Node::Dir { .. } => FileType::Directory,
                Node::File(_) => FileType::RegularFile,
            };
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: minfs SOURCE_DIR MOUNTPOINT");
        std::process::exit(2);
    }
    let fs = MinFs::load(Path::new(&args[1])).expect("load source dir");
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("minfs".into()),
        MountOption::Subtype("minfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    config.n_threads = Some(4);
    fuser::mount(fs, &args[2], &config).expect("mount");
}
