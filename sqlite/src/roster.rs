//! Reading a conversation with all its members (a roster) from the database, for the
//! cache of rosters in memory.

use rusqlite::Connection;

use crate::cache::{Cache, MAX_ROSTER_MEMBERS, Roster};
use crate::in_flight::InFlight;
use crate::queries::conversation_tx;
use crate::rows::{MEMBER_COLUMNS, member_at};

/// Reads a conversation with all its members from the database, brought up to its
/// messages in flight, and keeps it in memory unless something changed meanwhile.
pub(crate) fn read_roster(
    c: &Connection,
    cache: &Cache,
    in_flight: &InFlight,
    id: &str,
) -> rusqlite::Result<Found<Roster>> {
    let since = cache.epoch();
    Ok(match load_roster(c, id)? {
        Found::Kept(mut roster) => {
            in_flight.overlay_roster(&mut roster);
            cache.keep_roster(since, roster.clone());
            Found::Kept(roster)
        }
        Found::Missing => Found::Missing,
        Found::Large => Found::Large,
    })
}

/// What a read of a conversation and its members found.
pub(crate) enum Found<T> {
    Kept(T),
    Missing,
    /// Too many members to hold in memory: read them from the database.
    Large,
}

/// Reads a conversation and all its members in one snapshot.
fn load_roster(c: &Connection, id: &str) -> rusqlite::Result<Found<Roster>> {
    let tx = c.unchecked_transaction()?;
    let Some(conversation) = conversation_tx(&tx, id)? else {
        return Ok(Found::Missing);
    };
    if conversation.member_count > MAX_ROSTER_MEMBERS {
        return Ok(Found::Large);
    }
    let members = tx
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m
             WHERE m.conversation_id = ?1 ORDER BY m.user_id"
        ))?
        .query_map([id], |r| member_at(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.finish()?;
    Ok(Found::Kept(Roster {
        conversation,
        members,
    }))
}
