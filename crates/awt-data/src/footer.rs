//! A check of a parquet file's footer before the parquet crate reads it: the schema's element count
//! and every element's `num_children` must fit what the file can hold. parquet 60.1 reserves
//! `num_children` slots before it checks them (fuzzing found a 9.9 GB reservation from a 1 kB file),
//! so the bound is enforced here, walking the footer's Thrift compact encoding (FileMetaData field 2,
//! `list<SchemaElement>`, field 5 of each element) without allocating.

/// Why a footer was refused.
pub(crate) type Refusal = String;

/// What a struct walk's visitor did with a field.
enum Field {
    Skip,
    Consumed,
    /// The walk has what it needs: stop before the rest (which the parquet crate checks itself).
    Stop,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, Refusal> {
        let v = *self.b.get(self.i).ok_or("the footer ends inside a value")?;
        self.i += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint in the footer is longer than 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, Refusal> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: u64) -> Result<(), Refusal> {
        let n = usize::try_from(n).map_err(|_| "a length in the footer does not fit")?;
        if n > self.b.len() - self.i {
            return Err(format!("a length in the footer ({n} bytes) runs past its end"));
        }
        self.i += n;
        Ok(())
    }

    /// A list/set header: (element count, element type); the count is bounded by the bytes left.
    fn list_header(&mut self) -> Result<(u64, u8), Refusal> {
        let h = self.byte()?;
        let n = if h >> 4 == 15 { self.varint()? } else { u64::from(h >> 4) };
        if n > (self.b.len() - self.i) as u64 {
            return Err(format!("a list in the footer claims {n} elements in {} bytes", self.b.len() - self.i));
        }
        Ok((n, h & 0x0f))
    }

    /// Skips one value of compact type `t`, at most `depth` levels of nesting.
    fn skip_value(&mut self, t: u8, depth: u32) -> Result<(), Refusal> {
        if depth == 0 {
            return Err("the footer nests deeper than 64 levels".into());
        }
        match t {
            1 | 2 => Ok(()),
            3 => self.byte().map(|_| ()),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            13 => self.skip(16), // uuid (newer Thrift)
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let (n, et) = self.list_header()?;
                for _ in 0..n {
                    self.skip_value(et, depth - 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                if n > (self.b.len() - self.i) as u64 {
                    return Err(format!("a map in the footer claims {n} entries"));
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_value(kv >> 4, depth - 1)?;
                    self.skip_value(kv & 0x0f, depth - 1)?;
                }
                Ok(())
            }
            12 => self.struct_fields(depth - 1, |_, _, _| Ok(Field::Skip)),
            other => Err(format!("unknown Thrift type {other} in the footer")),
        }
    }

    /// Walks a struct's fields; `visit(cursor, id, type)` skips a field, consumes it, or ends the walk.
    fn struct_fields(
        &mut self,
        depth: u32,
        mut visit: impl FnMut(&mut Self, i16, u8) -> Result<Field, Refusal>,
    ) -> Result<(), Refusal> {
        let mut id: i16 = 0;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(());
            }
            let t = h & 0x0f;
            id = if h >> 4 == 0 {
                i16::try_from(self.zigzag()?).map_err(|_| "a field id in the footer does not fit")?
            } else {
                id.checked_add(i16::from(h >> 4)).ok_or("a field id in the footer overflows")?
            };
            match visit(self, id, t)? {
                Field::Skip => self.skip_value(t, depth)?,
                Field::Consumed => {}
                Field::Stop => return Ok(()),
            }
        }
    }
}

/// Checks the footer of a parquet file held in `bytes`: the schema has no more elements than the
/// footer has bytes, and no element claims more children than the schema has elements.
pub(crate) fn check(bytes: &[u8]) -> Result<(), Refusal> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        return Ok(()); // not a parquet file: the parquet crate says so
    }
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    if len > n - 8 {
        return Ok(()); // the parquet crate reports the bad length
    }
    let mut c = Cursor { b: &bytes[n - 8 - len..n - 8], i: 0 };
    let mut result = Ok(());
    c.struct_fields(64, |c, id, t| {
        if id != 2 || t != 9 {
            return Ok(Field::Skip);
        }
        let (elements, et) = c.list_header()?;
        for k in 0..elements {
            if et != 12 {
                return Err("the schema is not a list of structs".into());
            }
            c.struct_fields(63, |c, id, t| {
                // parquet's reader takes the varint whatever integer type the field declares.
                if id == 5 && matches!(t, 4..=6) {
                    let children = c.zigzag()?;
                    if children < 0 || children as u64 >= elements {
                        result = Err(format!(
                            "schema element {k} claims {children} children but the schema has {elements} elements"
                        ));
                    }
                    return Ok(Field::Consumed);
                }
                Ok(Field::Skip)
            })?;
        }
        Ok(Field::Stop)
    })?;
    result
}

#[cfg(test)]
mod tests {
    use super::check;

    /// A footer: FileMetaData { 2: list<SchemaElement> } with the given num_children per element.
    fn file(children: &[i32]) -> Vec<u8> {
        let mut m = vec![0x29]; // field 2 (delta 2), type list (9)
        m.push(((children.len() as u8) << 4) | 12);
        for &c in children {
            // field 4: name "x" (binary), field 5: num_children (i32, zigzag)
            m.extend([0x48, 1, b'x', 0x15]);
            m.push(((c << 1) ^ (c >> 31)) as u8);
            m.push(0);
        }
        m.push(0);
        let mut f = b"PAR1".to_vec();
        f.extend(&m);
        f.extend((m.len() as u32).to_le_bytes());
        f.extend(b"PAR1");
        f
    }

    #[test]
    fn bounds_children_by_the_schema() {
        assert_eq!(check(&file(&[2, 0, 0])), Ok(()));
        let e = check(&file(&[60, 0, 0])).unwrap_err();
        assert!(e.contains("claims 60 children") && e.contains("3 elements"), "{e}");
        assert!(check(&file(&[-1])).unwrap_err().contains("-1 children"));
        // A list that claims more elements than follow is refused, not read past the footer's end.
        let mut f = file(&[2, 0, 0]);
        f[5] = (5 << 4) | 12;
        assert!(check(&f).unwrap_err().contains("ends inside"));
        // Only the tail matters: the footer and its length.
        let f = file(&[60, 0, 0]);
        assert!(check(&f[4..]).is_err());
        assert_eq!(check(b"not parquet"), Ok(()));
    }
}
