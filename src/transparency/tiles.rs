//! Tile paths of c2sp.org/tlog-tiles: `tile/<L>/<N>[.p/<W>]` for hash tiles
//! and `tile/entries/<N>[.p/<W>]` for entry bundles, `N` written in groups of
//! three digits (`x001/x234/067`). The height is always 8, so it is not in the
//! path; `tlog_tiles` parses Go's form (`tile/8/<L>/…`, `tile/8/data/…`),
//! which is the same with the height put back.

use tlog_tiles::Tile;

use crate::ledger::tree::TILE_HEIGHT;

/// What a tile path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileRequest {
    /// Hash tile: `width` hashes at tree level 8·`level`, from `index`·256.
    Hashes { level: u8, index: u64, width: u32 },
    /// Entry bundle: `width` records from `index`·256.
    Entries { index: u64, width: u32 },
}

impl TileRequest {
    /// Parses the part after `tile/`; `None` for anything not in canonical form.
    pub fn parse(path: &str) -> Option<Self> {
        // `Tile::new` panics on a level of 64 or more and on a width of 0,
        // which `Tile::from_path` lets through: refuse those first.
        let (first, _) = path.split_once('/')?;
        if first != "entries" && first.parse::<u8>().ok()? >= 64 {
            return None;
        }
        if let Some((_, width)) = path.rsplit_once(".p/")
            && width.parse::<u32>().ok()? == 0
        {
            return None;
        }
        let go_path = match path.strip_prefix("entries/") {
            Some(rest) => format!("tile/{TILE_HEIGHT}/data/{rest}"),
            None => format!("tile/{TILE_HEIGHT}/{path}"),
        };
        let tile = Tile::from_path(&go_path).ok()?;
        Some(if tile.is_data() {
            Self::Entries {
                index: tile.level_index(),
                width: tile.width(),
            }
        } else {
            Self::Hashes {
                level: tile.level(),
                index: tile.level_index(),
                width: tile.width(),
            }
        })
    }

    /// A full tile never changes, so it may be cached for ever.
    pub fn is_full(&self) -> bool {
        let (Self::Hashes { width, .. } | Self::Entries { width, .. }) = self;
        *width == 1 << TILE_HEIGHT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_paths_only() {
        assert_eq!(
            TileRequest::parse("0/000"),
            Some(TileRequest::Hashes {
                level: 0,
                index: 0,
                width: 256
            })
        );
        assert_eq!(
            TileRequest::parse("1/x001/234.p/7"),
            Some(TileRequest::Hashes {
                level: 1,
                index: 1234,
                width: 7
            })
        );
        assert_eq!(
            TileRequest::parse("entries/005.p/255"),
            Some(TileRequest::Entries {
                index: 5,
                width: 255
            })
        );
        assert!(TileRequest::parse("entries/005.p/255").is_some_and(|t| !t.is_full()));
        assert!(TileRequest::parse("0/000").is_some_and(|t| t.is_full()));
        for bad in [
            "64/000",
            "255/000",
            "0/000.p/00",
            "entries/000.p/0",
            "0/0",
            "0/1234",
            "0/000.p/256",
            "0/000.p/0",
            "x/000",
            "0/000/",
            "../0/000",
            "8/0/000",
            "",
        ] {
            assert_eq!(TileRequest::parse(bad), None, "{bad}");
        }
    }
}
