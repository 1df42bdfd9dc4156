//! `oci images` (every name, then the images left without one as `<none>`) and `oci rm`
//! (names and composefs image refs of an image; an unnamed image forgotten).

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Result, bail};
use cfs_oci::store::{self, Kind, StoredImage};
use cfs_repository::Repository;

use super::{human_size, short_digest};

/// `oci images`: every name, then every image left without one (`<none>`, as podman).
pub(super) fn images(repo: &Repository, json: bool) -> Result<()> {
    let mut cache: HashMap<String, StoredImage> = HashMap::new();
    let mut rows: Vec<(Option<String>, String)> = Vec::new();
    let named = store::names(repo)?.into_iter().map(|(n, c)| (Some(n), c));
    let unnamed = store::unnamed(repo)?.into_iter().map(|c| (None, c));
    for (name, cid) in named.chain(unnamed) {
        if !cache.contains_key(&cid) {
            match store::open(repo, &cid) {
                Ok(img) => {
                    cache.insert(cid.clone(), img);
                }
                Err(e) => {
                    let what = name.as_deref().unwrap_or(cid.as_str());
                    eprintln!("cfsctl: warning: {what}: {e:#}");
                    continue;
                }
            }
        }
        rows.push((name, cid));
    }
    let rows: Vec<(Option<String>, &StoredImage)> = rows
        .into_iter()
        .filter_map(|(n, c)| cache.get(&c).map(|i| (n, i)))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, img)| {
                serde_json::json!({
                    "name": name,
                    "image_id": img.id,
                    "kind": img.kind,
                    "created": img.created,
                    "layers": img.layers.len(),
                    "size": img.size,
                    "manifest_digest": img.manifest_digest,
                    "platform": img.platform,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    const NONE: &str = "<none>";
    let width = rows
        .iter()
        .map(|(n, _)| n.as_deref().unwrap_or(NONE).len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:12}  {:20}  {:>6}  {:>10}",
        "NAME", "IMAGE ID", "CREATED", "LAYERS", "SIZE"
    )?;
    for (name, img) in rows {
        let name = name.as_deref().unwrap_or(NONE);
        let created = img.created.as_deref().unwrap_or("-");
        let created = created.get(..19).unwrap_or(created).replace('T', " ");
        let kind = if img.kind == Kind::Artifact {
            " (artifact)"
        } else {
            ""
        };
        writeln!(
            out,
            "{name:width$}  {:12}  {created:20}  {:>6}  {:>10}{kind}",
            short_digest(&img.id),
            img.layers.len(),
            human_size(img.size)
        )?;
    }
    Ok(())
}

/// `oci rm NAME`: every name of the image and its composefs image refs; an unnamed image is
/// forgotten (gc frees its space).
pub(super) fn remove(repo: &Repository, name: &str) -> Result<()> {
    let cid = store::resolve(repo, name)?;
    // The composefs image refs (`oci/X`) whose X names this image, found before the
    // names go.
    let mut image_refs = Vec::new();
    for r in repo.list_image_refs()? {
        if let Some(x) = r.name.strip_prefix(&store::image_ref_name(""))
            && store::resolve(repo, x).is_ok_and(|c| c == cid)
        {
            image_refs.push(r.name);
        }
    }
    let names: Vec<String> = store::names(repo)?
        .into_iter()
        .filter(|(_, c)| *c == cid)
        .map(|(n, _)| n)
        .collect();
    if names.is_empty() && image_refs.is_empty() {
        // An image left without a name (`<none>`): forget it now; gc frees its space.
        if repo.forget_stream(Some(&cfs_image::repo::ErofsImageObjects), &cid)? {
            println!("removed unnamed image {}", store::image_id_of(&cid));
            eprintln!("run `cfsctl gc` to free its space");
            return Ok(());
        }
        bail!("{name:?} has no names to remove");
    }
    // Image refs first, names last: killed in between, a name is left by which a
    // second `oci rm` finds (and removes) everything that is left.
    for r in image_refs {
        repo.remove_image_ref(&r)?;
        println!("removed image ref {r}");
    }
    for n in names {
        repo.remove_stream_ref(&n)?;
        println!("untagged {n}");
    }
    eprintln!(
        "removed {}; run `cfsctl gc` to free its space",
        short_digest(cid.rsplit_once('-').map_or(cid.as_str(), |(_, d)| d))
    );
    Ok(())
}
