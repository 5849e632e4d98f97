//! Identifiers drawn from the node's seed: STUN transaction ids and punch
//! tokens. Unpredictable to nobody who knows the seed; unique enough to tell
//! a node's own transactions apart.

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Identifiers drawn from the seed: STUN transaction ids, punch tokens.
#[derive(Debug)]
pub(crate) struct Ids {
    seed: u64,
    counter: u64,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids { seed, counter: 0 }
    }

    fn state(&mut self) -> u64 {
        let x = self.seed ^ self.counter.rotate_left(32);
        self.counter += 1;
        x
    }

    pub fn transaction_id(&mut self) -> crate::stun::TransactionId {
        let mut x = self.state();
        let a = splitmix(&mut x).to_be_bytes();
        let b = splitmix(&mut x).to_be_bytes();
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&a);
        t[8..].copy_from_slice(&b[..4]);
        crate::stun::TransactionId(t)
    }

    pub fn token(&mut self) -> u32 {
        let mut x = self.state();
        (splitmix(&mut x) >> 32) as u32
    }
}
