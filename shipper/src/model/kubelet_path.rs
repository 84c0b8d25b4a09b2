//! Which pod a container log file belongs to, as kubelet's paths tell.
//!
//! In: a watched path. Out: a [`PodRef`] (namespace, pod, container, and the pod's uid
//! where the layout has it), or `None` for a path in neither of kubelet's layouts:
//! - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` (and its rotated
//!   `<n>.log.<time>`): namespace and pod names cannot contain `_`, so the split is exact;
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`: no uid.
//!
//! Here, in the neutral model, because two folders read it: the file source makes the
//! `namespace`, `pod`, `container` labels of it, and the pod metadata stage finds the pod's
//! metadata by its uid.

use std::path::Path;

/// A container's log file's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The pod's uid (`/var/log/pods/` only); for a static pod, the hash its mirror pod
    /// carries in the `kubernetes.io/config.mirror` annotation.
    pub uid: Option<String>,
}

impl PodRef {
    /// The pod of the file at `path`, from either of kubelet's layouts.
    pub fn of(path: &Path) -> Option<PodRef> {
        pod_log(path).or_else(|| container_link(path))
    }
}

fn pod_log(path: &Path) -> Option<PodRef> {
    let container_dir = path.parent()?;
    let pod_dir = container_dir.parent()?;
    if pod_dir.parent()?.file_name()? != "pods" {
        return None;
    }
    let mut parts = pod_dir.file_name()?.to_str()?.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    Some(PodRef {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container_dir.file_name()?.to_str()?.into(),
        uid: Some(uid.into()),
    })
}

fn container_link(path: &Path) -> Option<PodRef> {
    if path.parent()?.file_name()? != "containers" {
        return None;
    }
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parts = rest.splitn(3, '_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    Some(PodRef {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        uid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_name_the_pod_and_only_the_pods_directory_its_uid() {
        let uid = "5d1c7b2e-8a4f-4e3b-9c6d-2f1e0a9b8c7d";
        let log = format!("/var/log/pods/shop_api-7d9f8c6b5-x2k4q_{uid}/api/0.log");
        let pod = PodRef::of(Path::new(&log)).unwrap();
        assert_eq!(
            pod,
            PodRef {
                namespace: "shop".into(),
                pod: "api-7d9f8c6b5-x2k4q".into(),
                container: "api".into(),
                uid: Some(uid.into()),
            }
        );
        let rotated = format!("{log}.20261122-095959");
        assert_eq!(PodRef::of(Path::new(&rotated)), Some(pod.clone()));
        let link = Path::new(
            "/var/log/containers/api-7d9f8c6b5-x2k4q_shop_api-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b.log",
        );
        assert_eq!(PodRef::of(link), Some(PodRef { uid: None, ..pod }));
        for other in [
            "/var/log/syslog",
            "/var/log/pods/no-underscores/api/0.log",
            "/var/log/containers/api_shop_api-short.log",
            "/",
        ] {
            assert_eq!(PodRef::of(Path::new(other)), None, "{other}");
        }
    }
}
