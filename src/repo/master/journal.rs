//! The commit journal: a batch made durable with one `fdatasync` instead of the five or
//! six fsyncs of a pack, its index, a ref and their directories.
//!
//! A batch's new objects and the head they lead to are appended to `state_dir/journal`
//! as one record, which is synced before any session of the batch is acknowledged. Only
//! then are the objects written as loose files and the branch ref moved, neither synced:
//! readers (other repository handles) see them at once, and the journal holds them
//! until a checkpoint. A checkpoint (every `Config::checkpoint_every` batches, when the
//! master is idle, and at shutdown) writes those objects as one pack and the ref, both
//! fsynced by libgit2, then empties the journal and deletes the loose files.
//!
//! At start a non-empty journal is replayed: missing objects are written again and the
//! ref is set to the last record's head; the next checkpoint makes that durable.
//!
//! Invariants:
//! * Every write of the local branch ref after start goes through [`State::commit_head`],
//!   so whenever the journal is not empty its last record names the branch's value.
//! * A record is acknowledged only once synced. A torn record at the end (a crash in
//!   the middle of an append) was never acknowledged: it is dropped.
//! * Each object's id is recomputed from its bytes when read back; a record that does
//!   not match is refused with an error, never half applied.
//! * The journal holds git objects in their loose form (compressed, as in the
//!   repository): SOPS files encrypted, never their plaintext.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::PermissionsExt as _;

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use git2::ObjectType;

use super::*;

const MAGIC: &[u8; 4] = b"VFJ1";

/// One object of a record: its id and its loose-object form (zlib of `<kind> <len>\0`
/// and the bytes), which is what the journal holds and what is written to the repository.
pub(super) type Object = (Oid, Vec<u8>);

/// One batch as the journal holds it.
#[derive(Debug, PartialEq)]
pub(super) struct Record {
    pub head: Oid,
    pub objects: Vec<Object>,
}

/// The open journal file and what the next checkpoint must make durable.
pub(super) struct Journal {
    file: File,
    len: u64,
    /// Records since the last checkpoint.
    pub records: usize,
    /// Loose objects written since the last checkpoint.
    pub loose: Vec<Oid>,
}

/// The loose-object form of an object (what git stores in `objects/xx/...`).
pub(super) fn loose_form(kind: ObjectType, data: &[u8]) -> Result<Vec<u8>> {
    let mut z = ZlibEncoder::new(Vec::with_capacity(data.len() / 2 + 64), Compression::fast());
    z.write_all(format!("{} {}\0", kind.str(), data.len()).as_bytes())?;
    z.write_all(data)?;
    Ok(z.finish()?)
}

/// The id of a loose-object form, recomputed from its bytes (`None` if it is not one).
fn loose_id(bytes: &[u8]) -> Option<Oid> {
    let mut raw = Vec::new();
    ZlibDecoder::new(bytes).read_to_end(&mut raw).ok()?;
    let nul = memchr::memchr(0, &raw)?;
    let header = std::str::from_utf8(&raw[..nul]).ok()?;
    let (kind, len) = header.split_once(' ')?;
    let kind = ObjectType::from_str(kind)?;
    let data = &raw[nul + 1..];
    (len.parse::<usize>().ok()? == data.len())
        .then(|| Oid::hash_object(kind, data).ok())
        .flatten()
}

pub(super) fn encode(head: Oid, objects: &[Object]) -> Vec<u8> {
    let size: usize = objects.iter().map(|o| 24 + o.1.len()).sum();
    let mut out = Vec::with_capacity(28 + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&(objects.len() as u32).to_le_bytes());
    for (oid, bytes) in objects {
        out.extend_from_slice(oid.as_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Reads records from `buf`: the complete records and their length (anything after is
/// a torn tail). A complete record that does not check out is an error.
pub(super) fn decode(buf: &[u8]) -> Result<(Vec<Record>, usize)> {
    struct Cur<'a>(&'a [u8], usize);
    impl<'a> Cur<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let s = self.0.get(self.1..self.1.checked_add(n)?)?;
            self.1 += n;
            Some(s)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }
        fn oid(&mut self) -> Option<Oid> {
            Oid::from_bytes(self.take(20)?).ok()
        }
    }
    let bad = |at: usize, why: &str| Error::Io(format!("journal: record at byte {at}: {why}"));
    let mut records = Vec::new();
    let mut cur = Cur(buf, 0);
    loop {
        let start = cur.1;
        if start == buf.len() {
            return Ok((records, start));
        }
        let Some(magic) = cur.take(4) else {
            return Ok((records, start));
        };
        if magic != MAGIC {
            return Err(bad(start, "no record starts here"));
        }
        let (Some(head), Some(n)) = (cur.oid(), cur.u32()) else {
            return Ok((records, start));
        };
        let mut objects = Vec::new();
        for _ in 0..n {
            let (Some(oid), Some(len)) = (cur.oid(), cur.u32()) else {
                return Ok((records, start));
            };
            let Some(bytes) = cur.take(len as usize) else {
                return Ok((records, start));
            };
            if loose_id(bytes) != Some(oid) {
                return Err(bad(
                    start,
                    &format!("object {oid} does not match its bytes"),
                ));
            }
            objects.push((oid, bytes.to_vec()));
        }
        records.push(Record { head, objects });
    }
}

impl Journal {
    /// Opens (or creates) the journal in `state_dir`; returns it with the records it
    /// holds. A torn tail is cut off so that new records follow the last good one.
    pub(super) fn open(state_dir: &Path) -> Result<(Journal, Vec<Record>)> {
        let path = state_dir.join("journal");
        let existed = path.exists();
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if !existed {
            // The file's name must survive a crash too, once, before the first record.
            file.sync_all()?;
            fsync_dir(state_dir)?;
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let (records, good) = decode(&buf)?;
        if good < buf.len() {
            tracing::warn!(
                "journal: dropping a torn record at its end ({} bytes, never acknowledged)",
                buf.len() - good
            );
            file.set_len(good as u64)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(good as u64))?;
        Ok((
            Journal {
                file,
                len: good as u64,
                records: records.len(),
                loose: Vec::new(),
            },
            records,
        ))
    }

    /// Appends one record and syncs it: when this returns, the batch survives a crash.
    pub(super) fn append(&mut self, head: Oid, objects: &[Object]) -> Result<()> {
        let rec = encode(head, objects);
        let res = self
            .file
            .write_all(&rec)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Leave no partial record behind: the batch is reported failed.
            self.undo_to(self.len);
            return Err(e.into());
        }
        self.len += rec.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Cuts the journal back to `len` bytes (a record whose batch failed after all).
    fn undo_to(&mut self, len: u64) {
        let res = self
            .file
            .set_len(len)
            .and_then(|()| self.file.seek(SeekFrom::Start(len)).map(|_| ()))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            tracing::error!("journal: cannot cut back a failed record: {e}");
        }
        self.len = len;
    }

    /// Empties the journal once everything in it is durable in the repository.
    fn clear(&mut self) -> Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_data()?;
        self.len = 0;
        self.records = 0;
        Ok(())
    }
}

/// Writes one loose object (not synced: the journal holds it). False if it was there.
pub(super) fn write_loose(objects: &Path, obj: &Object) -> Result<bool> {
    let (oid, bytes) = obj;
    let hex = oid.to_string();
    let dir = objects.join(&hex[..2]);
    let path = dir.join(&hex[2..]);
    if path.exists() {
        return Ok(false);
    }
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("tmp_valuesfs_{}", &hex[2..]));
    fs::write(&tmp, bytes)?;
    // Read-only, and private like everything in the state dir (whatever the umask).
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400))?;
    fs::rename(&tmp, &path)?;
    Ok(true)
}

/// Points a loose ref at `oid` (not synced: the journal's last record names it).
fn write_ref(repo_path: &Path, name: &str, oid: Oid) -> Result<()> {
    let path = repo_path.join(name);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let lock = repo_path.join(format!("{name}.lock"));
    fs::write(&lock, format!("{oid}\n"))?;
    fs::rename(&lock, &path)?;
    Ok(())
}

/// Replays a journal left by a crash onto `repo`: every object present, the local ref
/// at the last record's head. The returned journal's next checkpoint makes it durable.
pub(super) fn recover(repo: &Repository, state_dir: &Path, local_ref: &str) -> Result<Journal> {
    let (mut journal, records) = Journal::open(state_dir)?;
    let Some(last) = records.last() else {
        return Ok(journal);
    };
    let objects = repo.path().join("objects");
    let odb = repo.odb()?;
    for obj in records.iter().flat_map(|r| &r.objects) {
        if !odb.exists(obj.0) {
            write_loose(&objects, obj)?;
        }
        journal.loose.push(obj.0);
    }
    if repo.find_commit(last.head).is_err() {
        return Err(Error::Io(format!(
            "journal: its last head {} is neither in it nor in the repository; \
             the state dir {} needs a look before this master may start",
            last.head,
            state_dir.display()
        )));
    }
    write_ref(repo.path(), local_ref, last.head)?;
    tracing::warn!(
        "journal: replayed {} batch(es) after an unclean stop; head {}",
        records.len(),
        last.head
    );
    Ok(journal)
}

impl State {
    /// Makes the in-memory head the branch's value, durably (one journal sync).
    pub(super) fn commit_head(&mut self) -> Result<()> {
        let Some(head) = self.head else {
            return Ok(());
        };
        let objects = self.batch_objects(head)?;
        let before = self.journal.len;
        self.journal.append(head, &objects)?;
        let dir = self.repo_path.join("objects");
        let written = objects.iter().try_fold(Vec::new(), |mut acc, o| {
            if write_loose(&dir, o)? {
                acc.push(o.0);
            }
            Ok::<_, Error>(acc)
        });
        let res = written.and_then(|w| {
            write_ref(&self.repo_path, &self.local_ref, head)?;
            Ok(w)
        });
        match res {
            Ok(w) => {
                self.journal.loose.extend(w);
                if let Some(m) = &mut self.mem {
                    m.mempack.reset()?;
                    m.dirty = false;
                }
                Ok(())
            }
            Err(e) => {
                self.journal.undo_to(before);
                self.journal.records -= 1;
                Err(e)
            }
        }
    }

    /// The objects of commits reachable from `head` and not from the ref on disk or the
    /// remote head: each commit, and the trees and blobs where it differs from its parent.
    fn batch_objects(&self, head: Oid) -> Result<Vec<Object>> {
        let mut walk = self.repo.revwalk()?;
        walk.push(head)?;
        for h in self.disk_head.into_iter().chain(self.remote) {
            if self.repo.find_commit(h).is_ok() {
                walk.hide(h)?;
            }
        }
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        for c in walk {
            let c = self.repo.find_commit(c?)?;
            ids.push(c.id());
            let old = c.parents().next().map(|p| p.tree_id());
            self.tree_objects(c.tree_id(), old, &mut seen, &mut ids)?;
        }
        let odb = self.repo.odb()?;
        ids.into_iter()
            .map(|id| {
                let o = odb.read(id)?;
                Ok((id, loose_form(o.kind(), o.data())?))
            })
            .collect()
    }

    fn tree_objects(
        &self,
        tree: Oid,
        old: Option<Oid>,
        seen: &mut HashSet<Oid>,
        out: &mut Vec<Oid>,
    ) -> Result<()> {
        if Some(tree) == old || !seen.insert(tree) {
            return Ok(());
        }
        out.push(tree);
        let t = self.repo.find_tree(tree)?;
        let old = match old {
            Some(o) => self.repo.find_tree(o).ok(),
            None => None,
        };
        for e in t.iter() {
            let prev = old.as_ref().and_then(|o| o.get_name_bytes(e.name_bytes()));
            if prev.as_ref().map(|p| p.id()) == Some(e.id()) {
                continue;
            }
            match e.kind() {
                Some(ObjectType::Tree) => {
                    let prev_tree = prev
                        .filter(|p| p.kind() == Some(ObjectType::Tree))
                        .map(|p| p.id());
                    self.tree_objects(e.id(), prev_tree, seen, out)?;
                }
                Some(ObjectType::Blob) if seen.insert(e.id()) => out.push(e.id()),
                // Submodule links name commits of other repositories.
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes everything journaled since the last checkpoint as one fsynced pack and
    /// the ref (fsynced), then empties the journal and drops the loose copies.
    pub(super) fn checkpoint(&mut self) -> Result<()> {
        if self.journal.records == 0 && self.journal.loose.is_empty() {
            return Ok(());
        }
        let odb = self.repo.odb()?;
        if !self.journal.loose.is_empty() {
            let mut pb = self.repo.packbuilder()?;
            for oid in &self.journal.loose {
                pb.insert_object(*oid, None)?;
            }
            write_pack(&odb, &mut pb)?;
        }
        if let Some(h) = self.disk_head {
            self.repo
                .reference(&self.local_ref, h, true, "valuesfs: checkpoint")?;
        }
        // The loose copies go before the journal is emptied: an empty journal then means
        // the batches live in packs only (a crash in between rewrites them from the journal).
        let dir = self.repo_path.join("objects");
        for oid in std::mem::take(&mut self.journal.loose) {
            let hex = oid.to_string();
            match fs::remove_file(dir.join(&hex[..2]).join(&hex[2..])) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("checkpoint: removing loose object {hex}: {e}"),
            }
        }
        self.journal.clear()?;
        Ok(())
    }

    /// Checkpoints, logging (not failing) on error: the journal still holds everything.
    pub(super) fn checkpoint_or_log(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::error!("checkpoint of the journal: {e} (the journal keeps the batches)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: ObjectType, data: &[u8]) -> Object {
        (
            Oid::hash_object(kind, data).expect("hash"),
            loose_form(kind, data).expect("deflate"),
        )
    }

    #[test]
    fn records_read_back_and_a_torn_tail_is_dropped() {
        let a = obj(ObjectType::Blob, b"one");
        let b = obj(ObjectType::Blob, b"two\0bytes");
        let r1 = encode(a.0, std::slice::from_ref(&a));
        let r2 = encode(b.0, &[a.clone(), b.clone()]);
        let mut buf = [r1.clone(), r2.clone()].concat();
        let (recs, good) = decode(&buf).expect("decode");
        assert_eq!(good, buf.len());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].objects, vec![a.clone(), b.clone()]);
        for cut in 1..r2.len() {
            let (recs, good) = decode(&buf[..r1.len() + cut]).expect("torn tail");
            assert_eq!((recs.len(), good), (1, r1.len()), "cut at {cut}");
        }
        // A flipped byte inside an object is refused, never applied.
        let at = buf.len() - 2;
        buf[at] ^= 1;
        assert!(decode(&buf).is_err());
        assert!(decode(b"XXXXrest").is_err());
    }

    #[test]
    fn open_cuts_a_torn_tail_and_appends_after_the_last_good_record() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = obj(ObjectType::Blob, b"kept");
        let b = obj(ObjectType::Blob, b"appended");
        let good = encode(a.0, std::slice::from_ref(&a));
        let torn = &encode(b.0, std::slice::from_ref(&b))[..10];
        fs::write(dir.path().join("journal"), [good.as_slice(), torn].concat()).expect("w");
        let (mut j, recs) = Journal::open(dir.path()).expect("open");
        assert_eq!(recs.len(), 1);
        j.append(b.0, std::slice::from_ref(&b)).expect("append");
        drop(j);
        let (_, recs) = Journal::open(dir.path()).expect("reopen");
        assert_eq!(
            recs.iter().map(|r| r.head).collect::<Vec<_>>(),
            vec![a.0, b.0]
        );
    }
}
