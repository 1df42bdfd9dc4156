//! Registering what a pull verified: the manifest (and list) streams, the image's config
//! stream (raw config JSON + named refs to every layer stream, the manifest and the list) or
//! an artifact's manifest stream, all registered after one `syncfs`, then the name.
//!
//! Also the warm path: [`finish_if_stored`] completes a pull whose image is stored already.

use std::collections::HashSet;

use cfs_repository::{ObjectId, Repository};
use oci_spec::image::ImageManifest;

use crate::error::PullError;
use crate::events::Events;
use crate::ids::{
    INDEX_REF, MANIFEST_REF, blob_content_id, config_content_id, manifest_content_id,
};
use crate::layer::layer_content_id;
use crate::manifest::{self, ConfigSummary, ManifestError, is_container_image, sha256_hex};

/// The manifest pulled: its digest and bytes.
pub(crate) struct Instance {
    pub(crate) hex: String,
    pub(crate) raw: Vec<u8>,
}

/// The list a manifest was chosen from.
pub(crate) struct ListInfo {
    pub(crate) hex: String,
    pub(crate) raw: Vec<u8>,
    pub(crate) media_type: String,
}

/// What a name now points to.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    /// `oci-config-sha256:<hex>` or, for an artifact, `oci-manifest-sha256:<hex>`.
    pub(crate) content_id: String,
    /// `sha256:<config hex>`, or the manifest digest for an artifact.
    pub(crate) image_id: String,
    pub(crate) artifact: bool,
    /// The image ID the name pointed at before, if the pull moved it.
    pub(crate) moved_from: Option<String>,
}

/// Errors of the registration steps, with the image named.
pub(crate) struct Reg<'a> {
    pub(crate) repo: &'a Repository,
    pub(crate) image: &'a str,
    pub(crate) events: &'a Events,
}

impl Reg<'_> {
    pub(crate) fn repo_err(&self) -> impl Fn(cfs_repository::Error) -> PullError + '_ {
        |source| PullError::Repository {
            image: self.image.to_owned(),
            source,
        }
    }

    pub(crate) fn manifest_err(&self) -> impl Fn(ManifestError) -> PullError + '_ {
        |source| PullError::Manifest {
            image: self.image.to_owned(),
            source,
        }
    }

    /// A stream to (re)use: existing, or written now and registered with the others.
    fn ensure_inline_stream(
        &self,
        cid: &str,
        content_type: &str,
        data: &[u8],
        to_register: &mut Vec<(String, ObjectId)>,
    ) -> Result<ObjectId, PullError> {
        let repo = self.repo;
        if let Some(id) = repo.stream_object(cid).map_err(self.repo_err())? {
            return Ok(id);
        }
        let mut w = repo.create_stream(content_type).map_err(self.repo_err())?;
        w.write_inline(data).map_err(self.repo_err())?;
        let id = w.finish().map_err(self.repo_err())?;
        to_register.push((cid.to_owned(), id));
        Ok(id)
    }

    /// Keeps a manifest list's exact bytes as its own stream; its content id and object.
    fn ensure_list_stream(
        &self,
        list: Option<&ListInfo>,
        to_register: &mut Vec<(String, ObjectId)>,
    ) -> Result<Option<(String, ObjectId)>, PullError> {
        let Some(l) = list else { return Ok(None) };
        let cid = manifest_content_id(&l.hex);
        let id = self.ensure_inline_stream(&cid, &l.media_type, &l.raw, to_register)?;
        Ok(Some((cid, id)))
    }

    /// Registers `reg` (one `syncfs` first) and points `name` at `target`.
    pub(crate) fn register_and_name(
        &self,
        reg: &[(String, ObjectId)],
        name: &str,
        target: &str,
    ) -> Result<Option<String>, PullError> {
        self.register(reg)?;
        let before = crate::store::set_name(self.repo, name, target).map_err(self.repo_err())?;
        Ok(before.map(|cid| crate::store::image_id_of(&cid)))
    }

    /// Registers `reg` (one `syncfs` first).
    pub(crate) fn register(&self, reg: &[(String, ObjectId)]) -> Result<(), PullError> {
        if !reg.is_empty() {
            let pairs: Vec<(&str, ObjectId)> = reg.iter().map(|(c, o)| (c.as_str(), *o)).collect();
            self.repo
                .register_streams(&pairs)
                .map_err(self.repo_err())?;
        }
        Ok(())
    }
}

pub(crate) fn media_type_of(m: &ImageManifest) -> String {
    m.media_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned())
}

/// If the image (config stream) or artifact (manifest stream) is already stored, stores what
/// is missing of the manifest and list, sets the name and says what it points to.
pub(crate) fn finish_if_stored(
    r: &Reg<'_>,
    name: &str,
    m: &ImageManifest,
    instance: &Instance,
    list: Option<&ListInfo>,
) -> Result<Option<Registered>, PullError> {
    let repo = r.repo;
    let manifest_cid = manifest_content_id(&instance.hex);
    if !is_container_image(m) {
        // An artifact is complete when its manifest stream (which references every blob) is.
        if repo
            .stream_object(&manifest_cid)
            .map_err(r.repo_err())?
            .is_none()
        {
            return Ok(None);
        }
        let mut reg = Vec::new();
        r.ensure_list_stream(list, &mut reg)?;
        let moved_from = r.register_and_name(&reg, name, &manifest_cid)?;
        r.events.message("artifact already stored");
        return Ok(Some(Registered {
            content_id: manifest_cid,
            image_id: format!("sha256:{}", instance.hex),
            artifact: true,
            moved_from,
        }));
    }
    let config_hex = sha256_hex(m.config().digest().as_ref())
        .map_err(r.manifest_err())?
        .to_owned();
    let config_cid = config_content_id(&config_hex);
    let Some(config_obj) = repo.stream_object(&config_cid).map_err(r.repo_err())? else {
        return Ok(None);
    };
    let reader = repo.open_stream_object(&config_obj).map_err(r.repo_err())?;
    let refs = reader.header().streams.clone();
    // A layer with a missing or damaged object: take the cold path, which writes it again.
    for s in &refs {
        if repo
            .complete_stream_object(&s.content_id)
            .map_err(r.repo_err())?
            .is_none()
        {
            return Ok(None);
        }
    }
    // The config is stored; make sure it references this manifest (and list), so they stay.
    let mut reg = Vec::new();
    let manifest_obj =
        r.ensure_inline_stream(&manifest_cid, &media_type_of(m), &instance.raw, &mut reg)?;
    let list_obj = r.ensure_list_stream(list, &mut reg)?;
    let has = |cid: &str| refs.iter().any(|s| s.content_id == cid);
    let mut extra = Vec::new();
    if !has(&manifest_cid) {
        extra.push((
            format!("{MANIFEST_REF}:sha256:{}", instance.hex),
            manifest_cid.clone(),
            manifest_obj,
        ));
    }
    if let Some((cid, obj)) = list_obj
        && !has(&cid)
    {
        let hex = cid.rsplit(':').next().unwrap_or_default().to_owned();
        extra.push((format!("{INDEX_REF}:sha256:{hex}"), cid, obj));
    }
    if !extra.is_empty() {
        let content_type = reader.header().content_type.clone();
        let config_raw = reader.read_to_vec(repo).map_err(r.repo_err())?;
        let mut w = repo.create_stream(&content_type).map_err(r.repo_err())?;
        w.write_inline(&config_raw).map_err(r.repo_err())?;
        for s in refs.iter() {
            w.add_stream_ref(&s.name, &s.content_id, s.object)
                .map_err(r.repo_err())?;
        }
        for (n, cid, obj) in &extra {
            w.add_stream_ref(n, cid, *obj).map_err(r.repo_err())?;
        }
        let id = w.finish().map_err(r.repo_err())?;
        reg.push((config_cid.clone(), id));
    }
    let moved_from = r.register_and_name(&reg, name, &config_cid)?;
    r.events.message("image already stored");
    Ok(Some(Registered {
        content_id: config_cid,
        image_id: format!("sha256:{config_hex}"),
        artifact: false,
        moved_from,
    }))
}

/// The verified config of an image, as fetched.
pub(crate) struct Config {
    pub(crate) raw: Vec<u8>,
    pub(crate) parsed: ConfigSummary,
}

/// After every blob was verified: writes the top-level streams and registers them together
/// with the blobs' streams `reg` (one `syncfs` for the whole pull), then sets the name.
/// `config` is `None` for an artifact.
pub(crate) fn register_pull(
    r: &Reg<'_>,
    name: &str,
    m: &ImageManifest,
    instance: &Instance,
    list: Option<&ListInfo>,
    config: Option<&Config>,
    mut reg: Vec<(String, ObjectId)>,
) -> Result<Registered, PullError> {
    let repo = r.repo;
    let manifest_cid = manifest_content_id(&instance.hex);
    let manifest_media_type = media_type_of(m);
    let list_obj = r.ensure_list_stream(list, &mut reg)?;
    let fresh = reg.clone();
    let stream_of = |cid: &str| -> Result<ObjectId, PullError> {
        if let Some((_, id)) = fresh.iter().find(|(c, _)| c == cid) {
            return Ok(*id);
        }
        repo.stream_object(cid)
            .map_err(r.repo_err())?
            .ok_or_else(|| PullError::Repository {
                image: r.image.to_owned(),
                source: cfs_repository::Error::NotFound {
                    kind: "stream",
                    name: cid.to_owned(),
                },
            })
    };
    let Some(config) = config else {
        let mut w = repo
            .create_stream(&manifest_media_type)
            .map_err(r.repo_err())?;
        w.write_inline(&instance.raw).map_err(r.repo_err())?;
        let mut named = HashSet::new();
        for d in std::iter::once(m.config()).chain(m.layers()) {
            let hex = sha256_hex(d.digest().as_ref()).map_err(r.manifest_err())?;
            let cid = blob_content_id(hex);
            if named.insert(cid.clone()) {
                w.add_stream_ref(d.digest().as_ref(), &cid, stream_of(&cid)?)
                    .map_err(r.repo_err())?;
            }
        }
        if let Some((cid, obj)) = &list_obj {
            w.add_stream_ref(INDEX_REF, cid, *obj)
                .map_err(r.repo_err())?;
        }
        let obj = w.finish().map_err(r.repo_err())?;
        reg.push((manifest_cid.clone(), obj));
        let moved_from = r.register_and_name(&reg, name, &manifest_cid)?;
        return Ok(Registered {
            content_id: manifest_cid,
            image_id: format!("sha256:{}", instance.hex),
            artifact: true,
            moved_from,
        });
    };
    let config_desc = m.config();
    let config_hex = sha256_hex(config_desc.digest().as_ref()).map_err(r.manifest_err())?;
    let manifest_obj =
        r.ensure_inline_stream(&manifest_cid, &manifest_media_type, &instance.raw, &mut reg)?;
    let config_cid = config_content_id(config_hex);
    let mut w = repo
        .create_stream(config_desc.media_type().as_ref())
        .map_err(r.repo_err())?;
    w.write_inline(&config.raw).map_err(r.repo_err())?;
    let mut named = HashSet::new();
    for diff_id in &config.parsed.rootfs.diff_ids {
        let hex = sha256_hex(diff_id).map_err(r.manifest_err())?;
        let cid = layer_content_id(hex);
        if named.insert(cid.clone()) {
            w.add_stream_ref(diff_id, &cid, stream_of(&cid)?)
                .map_err(r.repo_err())?;
        }
    }
    w.add_stream_ref(MANIFEST_REF, &manifest_cid, manifest_obj)
        .map_err(r.repo_err())?;
    if let Some((cid, obj)) = &list_obj {
        w.add_stream_ref(INDEX_REF, cid, *obj)
            .map_err(r.repo_err())?;
    }
    let obj = w.finish().map_err(r.repo_err())?;
    reg.push((config_cid.clone(), obj));
    let moved_from = r.register_and_name(&reg, name, &config_cid)?;
    Ok(Registered {
        content_id: config_cid,
        image_id: format!("sha256:{config_hex}"),
        artifact: false,
        moved_from,
    })
}
