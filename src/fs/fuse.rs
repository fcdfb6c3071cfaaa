//! The thin FUSE adapter: each callback calls [`Fs`] and answers with its result or its
//! errno. The only file that sees fuser's types. Operations that may wait on the master
//! (flush, fsync, release, unlink, rmdir, rename, symlink, setattr) run on a worker pool and
//! answer from there, so no FUSE thread ever blocks on git or the network.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::view::{Attr, FileKind, Fs, OpenReply, SetAttr};
use super::Error;
use crate::metrics::{self, Op, Timer};

/// Attribute and entry cache time for the live view.
const TTL_LIVE: Duration = Duration::from_secs(1);
/// For immutable views (history, conflicts).
const TTL_IMMUTABLE: Duration = Duration::from_secs(3600);

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads that run blocking operations and send their replies.
pub struct Workers {
    tx: Mutex<Sender<Job>>,
}

impl Workers {
    pub fn new(n: usize) -> Workers {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("valuesfs-worker-{i}"))
                .spawn(move || loop {
                    let job = {
                        let guard = match rx.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        guard.recv()
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start worker thread: {e}");
            }
        }
        Workers { tx: Mutex::new(tx) }
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        let tx = match self.tx.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        // If the pool is gone the job (and its reply) is dropped: the kernel gets EIO.
        let _ = tx.send(Box::new(job));
    }

    /// Runs `job`, then stops `t`: the time includes the wait for a worker.
    fn run_timed(&self, t: Timer, job: impl FnOnce() + Send + 'static) {
        self.run(move || {
            job();
            drop(t);
        })
    }
}

pub struct Adapter {
    fs: Arc<Fs>,
    workers: Arc<Workers>,
}

impl Adapter {
    pub fn new(fs: Arc<Fs>, workers: Arc<Workers>) -> Adapter {
        Adapter { fs, workers }
    }
}

fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            FileKind::File => FileType::RegularFile,
            FileKind::Dir => FileType::Directory,
            FileKind::Symlink => FileType::Symlink,
        },
        perm: a.perm,
        nlink: if a.kind == FileKind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn ttl(a: &Attr) -> Duration {
    if a.immutable {
        TTL_IMMUTABLE
    } else {
        TTL_LIVE
    }
}

fn open_flags(r: &OpenReply) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if r.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if r.noflush {
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    if r.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    f
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::from_i32(libc::EINVAL))
}

fn time_of(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _t = metrics::time(Op::Lookup);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.lookup(parent.0, name) {
            Ok(a) => {
                self.fs.remember(parent.0, name, a.ino);
                reply.entry(&ttl(&a), &file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = metrics::time(Op::Getattr);
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let t = metrics::time(Op::Setattr);
        let fs = self.fs.clone();
        self.workers.run_timed(t, move || {
            let set = SetAttr {
                mode,
                uid,
                gid,
                size,
                mtime: mtime.map(time_of),
            };
            match fs.setattr(ino.0, fh.map(|f| f.0), set) {
                Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = metrics::time(Op::Readlink);
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _t = metrics::time(Op::Mkdir);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.mkdir(parent.0, name) {
            Ok(a) => {
                self.fs.remember(parent.0, name, a.ino);
                reply.entry(&ttl(&a), &file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let t = metrics::time(Op::Unlink);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        let fs = self.fs.clone();
        self.workers
            .run_timed(t, move || match fs.unlink(parent.0, &name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let t = metrics::time(Op::Rmdir);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        // Commits the deletions of files removed below it: on a worker.
        let fs = self.fs.clone();
        self.workers
            .run_timed(t, move || match fs.rmdir(parent.0, &name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let t = metrics::time(Op::Symlink);
        let name = match name_str(link_name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        let target = target.as_os_str().as_encoded_bytes().to_vec();
        let fs = self.fs.clone();
        self.workers
            .run_timed(t, move || match fs.symlink(parent.0, &name, &target) {
                Ok(a) => {
                    fs.remember(parent.0, &name, a.ino);
                    reply.entry(&ttl(&a), &file_attr(&a), Generation(0))
                }
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let t = metrics::time(Op::Rename);
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a.to_string(), b.to_string()),
            _ => return reply.error(Errno::from_i32(libc::EINVAL)),
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::from_i32(libc::EINVAL));
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let fs = self.fs.clone();
        self.workers.run_timed(t, move || {
            match fs.rename(parent.0, &name, newparent.0, &newname, noreplace) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _t = metrics::time(Op::Open);
        match self.fs.open(ino.0, flags.0) {
            Ok(r) => reply.opened(FileHandle(r.fh), open_flags(&r)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _t = metrics::time(Op::Read);
        match self.fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _t = metrics::time(Op::Write);
        let append = flags.0 & libc::O_APPEND != 0;
        match self.fs.write(fh.0, offset, data, append) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        let t = metrics::time(Op::Flush);
        let fs = self.fs.clone();
        self.workers.run_timed(t, move || match fs.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let t = metrics::time(Op::Release);
        if self.fs.release_fast(fh.0) {
            return reply.ok();
        }
        let fs = self.fs.clone();
        self.workers.run_timed(t, move || match fs.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let t = metrics::time(Op::Fsync);
        let fs = self.fs.clone();
        self.workers.run_timed(t, move || match fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _t = metrics::time(Op::Readdir);
        let entries = match self.fs.readdir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (ino.0, FileKind::Dir, ".".to_string()),
            (ino.0, FileKind::Dir, "..".to_string()),
        ];
        for (i, (ino, kind, name)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            let kind = match kind {
                FileKind::File => FileType::RegularFile,
                FileKind::Dir => FileType::Directory,
                FileKind::Symlink => FileType::Symlink,
            };
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Report the state directory's filesystem: that is where commits land.
        let (mut blocks, mut bfree, mut bavail) = (1 << 20, 1 << 19, 1 << 19);
        if let Ok(p) = std::ffi::CString::new(self.fs.cfg.state_dir.as_os_str().as_encoded_bytes())
        {
            // SAFETY: statvfs writes into the zeroed struct we own.
            let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(p.as_ptr(), &mut s) } == 0 {
                let scale = s.f_frsize.max(1) / 4096;
                blocks = s.f_blocks.saturating_mul(scale.max(1));
                bfree = s.f_bfree.saturating_mul(scale.max(1));
                bavail = s.f_bavail.saturating_mul(scale.max(1));
            }
        }
        reply.statfs(blocks, bfree, bavail, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // isatty() probes: not a terminal.
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // The kernel falls back to read and write, which go through the buffers.
        reply.error(Errno::from_i32(libc::ENOSYS));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _t = metrics::time(Op::Create);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.fs.create(parent.0, name, flags, mode) {
            Ok((a, r)) => {
                self.fs.remember(parent.0, name, a.ino);
                reply.created(
                    &ttl(&a),
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(r.fh),
                    open_flags(&r),
                )
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}
