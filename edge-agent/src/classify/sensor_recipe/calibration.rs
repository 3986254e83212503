//! One device's calibration for the sensor recipe: fitting it on the first
//! rows, and its byte encoding for the store. The recipe's features and alarm
//! rule are in the parent module.

use super::{Raw, SensorRecipe};

/// One device's calibration: per channel mean and floored std of raw rows,
/// the std of each trailing-mean block over the calibration rows (`s`, one
/// block of `channels` values per mean window) and the mean trailing std (`r`).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub mu: Vec<f64>,
    pub sd: Vec<f64>,
    pub s: Vec<f64>,
    pub r: Vec<f64>,
}

impl Calibration {
    /// Fits the calibration from a device's first `calib_rows` rows.
    pub fn fit(recipe: &SensorRecipe, rows: &[Vec<f64>]) -> Calibration {
        let c = recipe.channels.len();
        let blocks = recipe.mean_windows.len();
        let n = rows.len().max(1) as f64;
        let mut mu = vec![0.0; c];
        for row in rows {
            for (m, x) in mu.iter_mut().zip(row) {
                *m += x;
            }
        }
        mu.iter_mut().for_each(|m| *m /= n);
        let sd: Vec<f64> = (0..c)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mu[j]).powi(2)).sum::<f64>() / n;
                var.sqrt()
                    .max(recipe.sd_floor_rel * mu[j].abs() + recipe.sd_floor_abs)
            })
            .collect();
        let mut raw = Raw::new(recipe, mu.clone(), sd.clone());
        let mut means = Vec::with_capacity(rows.len());
        let mut stds = Vec::with_capacity(rows.len());
        for row in rows {
            let (m, v) = raw.push(row);
            means.push(m.to_vec());
            stds.push(v.to_vec());
        }
        let s = (0..blocks * c)
            .map(|k| {
                let m = means.iter().map(|v| v[k]).sum::<f64>() / n;
                let var = means.iter().map(|v| (v[k] - m).powi(2)).sum::<f64>() / n;
                var.sqrt() + recipe.s_eps
            })
            .collect();
        let r = (0..c)
            .map(|j| stds.iter().map(|v| v[j]).sum::<f64>() / n + recipe.r_eps)
            .collect();
        Calibration { mu, sd, s, r }
    }

    /// Little-endian encoding for the store: channel count, mean-window count,
    /// then mu, sd, s, r as f64.
    pub fn to_bytes(&self) -> Vec<u8> {
        let c = self.mu.len();
        let blocks = self.s.len().checked_div(c).unwrap_or(0);
        let mut out = Vec::with_capacity(8 + 8 * (3 * c + self.s.len()));
        out.extend_from_slice(&(c as u32).to_le_bytes());
        out.extend_from_slice(&(blocks as u32).to_le_bytes());
        for v in self.mu.iter().chain(&self.sd).chain(&self.s).chain(&self.r) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Inverse of [`Calibration::to_bytes`]; `None` on any malformed input.
    pub fn from_bytes(bytes: &[u8]) -> Option<Calibration> {
        let c = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let blocks = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        let body = bytes.get(8..)?;
        let sn = c.checked_mul(blocks)?;
        let count = c.checked_mul(3)?.checked_add(sn)?;
        if c == 0 || body.len() != count.checked_mul(8)? {
            return None;
        }
        let vals: Vec<f64> = body
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        Some(Calibration {
            mu: vals[..c].to_vec(),
            sd: vals[c..2 * c].to_vec(),
            s: vals[2 * c..2 * c + sn].to_vec(),
            r: vals[2 * c + sn..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! Parity with Python on real SKAB files lives in `tests/sensor_recipe.rs`.
    use super::*;

    #[test]
    fn malformed_calibration_bytes_are_rejected() {
        assert_eq!(Calibration::from_bytes(&[]), None);
        assert_eq!(Calibration::from_bytes(&[1, 0, 0, 0, 1, 0, 0, 0, 0]), None);
    }
}
