//! Global variables of a BPF object by name, as a skeleton's `skel->bss->x` / `skel->data->x`
//! gives them to C: each variable's section, offset and size come from the object's BTF
//! (its `DATASEC`s), the value from the section's internal map.
//!
//! The BTF is the one libbpf keeps for an opened object, not the file's: clang emits every
//! `DATASEC` with size 0 and all variable offsets 0, and libbpf fills them in from the ELF
//! symbols when it opens the object (`bpf_object_fixup_btf`). [`Globals::of`] therefore takes
//! an opened or loaded object; [`Globals::read`] and [`Globals::write`] need a loaded one
//! (the map must exist in the kernel), and go through `BPF_MAP_LOOKUP_ELEM` /
//! `BPF_MAP_UPDATE_ELEM` of key 0, so a read after a program run sees what it wrote.

use std::ffi::CString;

use libbpf_rs::btf::types::{DataSec, Var};
use libbpf_rs::btf::BtfType;
use libbpf_rs::{AsRawLibbpf, Btf, Map, MapCore, MapFlags, Object};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GlobalError {
    #[error("the object has no BTF, so its global variables cannot be found by name")]
    NoBtf,
    #[error("cannot read the object's BTF: {0}")]
    Btf(libbpf_rs::Error),
    #[error("no global variable '{name}' in the object (it has: {available})")]
    NotFound { name: String, available: String },
    #[error("'{name}' is {size} byte(s) in {section}, not the {want} asked for")]
    Size {
        name: String,
        section: String,
        size: usize,
        want: usize,
    },
    #[error("no map for section {section} in the object")]
    NoMap { section: String },
    #[error("{section}: {op} of the map's value failed: {source}")]
    Map {
        section: String,
        op: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("{section}: the map's value is {len} byte(s), but '{name}' lies at {offset}..{end}")]
    Range {
        section: String,
        name: String,
        offset: usize,
        end: usize,
        len: usize,
    },
}

/// Where one global variable lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Global {
    pub name: String,
    /// The data section, e.g. `.bss`, `.data`, `.rodata`.
    pub section: String,
    pub offset: usize,
    pub size: usize,
}

/// The global variables of one object (every `DATASEC` but `.ksyms`, `.kconfig` and
/// `license`), in BTF order.
#[derive(Clone, Debug)]
pub struct Globals {
    vars: Vec<Global>,
}

impl Globals {
    /// The variables of `obj` (an `OpenObject` or an `Object`), from the BTF libbpf keeps.
    pub fn of<O: AsRawLibbpf<LibbpfType = libbpf_sys::bpf_object>>(
        obj: &O,
    ) -> Result<Globals, GlobalError> {
        let raw = obj.as_libbpf_object();
        // SAFETY: `raw` points to the object `obj` owns, alive for this call; the BTF view
        // borrows it only inside this function.
        let btf = Btf::from_bpf_object(unsafe { raw.as_ref() })
            .map_err(GlobalError::Btf)?
            .ok_or(GlobalError::NoBtf)?;
        let mut vars = Vec::new();
        for sec in btf.type_by_kind::<DataSec<'_>>() {
            let section = sec
                .name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if matches!(section.as_str(), ".ksyms" | ".kconfig" | "license" | "") {
                continue;
            }
            for member in sec.iter() {
                let Some(var) = btf
                    .type_by_id::<BtfType<'_>>(member.ty)
                    .and_then(|t| Var::try_from(t).ok())
                else {
                    continue;
                };
                let Some(name) = var.name() else { continue };
                vars.push(Global {
                    name: name.to_string_lossy().into_owned(),
                    section: section.clone(),
                    offset: member.offset as usize,
                    size: member.size,
                });
            }
        }
        Ok(Globals { vars })
    }

    /// Every variable found.
    pub fn all(&self) -> &[Global] {
        &self.vars
    }

    /// The variable `name`.
    pub fn get(&self, name: &str) -> Result<&Global, GlobalError> {
        self.vars
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| GlobalError::NotFound {
                name: name.to_string(),
                available: self.names(),
            })
    }

    fn names(&self) -> String {
        if self.vars.is_empty() {
            return "none".into();
        }
        let v: Vec<String> = self
            .vars
            .iter()
            .map(|g| format!("{} {}", g.section, g.name))
            .collect();
        v.join(", ")
    }

    /// The variable `name`, which must be `want` bytes.
    fn sized(&self, name: &str, want: usize) -> Result<&Global, GlobalError> {
        let g = self.get(name)?;
        if g.size != want {
            return Err(GlobalError::Size {
                name: g.name.clone(),
                section: g.section.clone(),
                size: g.size,
                want,
            });
        }
        Ok(g)
    }

    /// The whole value of `section`'s map in the loaded `obj`.
    fn section_value<'o>(
        obj: &'o Object,
        section: &str,
    ) -> Result<(Map<'o>, Vec<u8>), GlobalError> {
        let no_map = || GlobalError::NoMap {
            section: section.to_string(),
        };
        let cname = CString::new(section).map_err(|_| no_map())?;
        // SAFETY: valid object pointer and NUL-terminated name; a name starting with '.'
        // matches an internal map's section name (libbpf's `real_name`).
        let ptr = unsafe {
            libbpf_sys::bpf_object__find_map_by_name(
                obj.as_libbpf_object().as_ptr(),
                cname.as_ptr(),
            )
        };
        // SAFETY: non-null pointers returned by libbpf point to maps `obj` owns.
        let map = Map::new(unsafe { ptr.as_ref() }.ok_or_else(no_map)?);
        let key = 0u32.to_ne_bytes();
        let value = map
            .lookup(&key, MapFlags::ANY)
            .map_err(|source| GlobalError::Map {
                section: section.to_string(),
                op: "lookup",
                source,
            })?
            .ok_or_else(no_map)?;
        Ok((map, value))
    }

    fn range(g: &Global, len: usize) -> Result<std::ops::Range<usize>, GlobalError> {
        let end = g.offset + g.size;
        if end > len {
            return Err(GlobalError::Range {
                section: g.section.clone(),
                name: g.name.clone(),
                offset: g.offset,
                end,
                len,
            });
        }
        Ok(g.offset..end)
    }

    /// The current bytes of `name` in the loaded `obj`.
    pub fn read(&self, obj: &Object, name: &str) -> Result<Vec<u8>, GlobalError> {
        let g = self.get(name)?;
        let (_, value) = Self::section_value(obj, &g.section)?;
        Ok(value[Self::range(g, value.len())?].to_vec())
    }

    /// `name` as an array of exactly `N` bytes.
    pub fn read_array<const N: usize>(
        &self,
        obj: &Object,
        name: &str,
    ) -> Result<[u8; N], GlobalError> {
        self.sized(name, N)?;
        let bytes = self.read(obj, name)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    /// A 4-byte signed variable (`int`).
    pub fn read_i32(&self, obj: &Object, name: &str) -> Result<i32, GlobalError> {
        Ok(i32::from_ne_bytes(self.read_array(obj, name)?))
    }

    /// A 4-byte unsigned variable (`__u32`).
    pub fn read_u32(&self, obj: &Object, name: &str) -> Result<u32, GlobalError> {
        Ok(u32::from_ne_bytes(self.read_array(obj, name)?))
    }

    /// Set `name` to `bytes` (exactly its size) in the loaded `obj`; the rest of the section
    /// keeps its current value.
    pub fn write(&self, obj: &Object, name: &str, bytes: &[u8]) -> Result<(), GlobalError> {
        let g = self.sized(name, bytes.len())?;
        let (map, mut value) = Self::section_value(obj, &g.section)?;
        let r = Self::range(g, value.len())?;
        value[r].copy_from_slice(bytes);
        map.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
            .map_err(|source| GlobalError::Map {
                section: g.section.clone(),
                op: "update",
                source,
            })
    }

    /// Set a 4-byte signed variable.
    pub fn write_i32(&self, obj: &Object, name: &str, v: i32) -> Result<(), GlobalError> {
        self.write(obj, name, &v.to_ne_bytes())
    }

    /// Set a `bool` (one byte).
    pub fn write_bool(&self, obj: &Object, name: &str, v: bool) -> Result<(), GlobalError> {
        self.write(obj, name, &[u8::from(v)])
    }
}

#[cfg(test)]
mod tests {
    use libbpf_rs::ObjectBuilder;

    use super::*;

    /// dump_socks.bpf.o's `.bss`: four ints. The file's own BTF has every offset 0; the opened
    /// object's must place them apart.
    #[test]
    fn offsets_come_from_the_opened_objects_btf() {
        let path = std::path::Path::new(crate::BPF_DIR).join("dump_socks.bpf.o");
        crate::loader::not_built(&path).unwrap_or_else(|e| panic!("{e}"));
        let open = ObjectBuilder::default()
            .open_file(&path)
            .expect("open dump_socks.bpf.o");
        let g = Globals::of(&open).expect("globals");
        let bss: Vec<&Global> = g.all().iter().filter(|v| v.section == ".bss").collect();
        assert!(bss.len() >= 4, "{bss:?}");
        for name in ["nr_seq", "nr_dropped", "read_err", "item_done"] {
            assert_eq!(g.get(name).expect(name).size, 4, "{bss:?}");
        }
        let mut spans: Vec<(usize, usize)> =
            bss.iter().map(|v| (v.offset, v.offset + v.size)).collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlapping variables: {bss:?}");
        }
        let err = g.get("no_such_var").unwrap_err().to_string();
        assert!(
            err.contains("no_such_var") && err.contains(".bss nr_seq"),
            "{err}"
        );
        let err = g.sized("nr_seq", 8).unwrap_err().to_string();
        assert!(err.contains("4 byte(s) in .bss, not the 8"), "{err}");
    }
}
