"""Stateless-key purposes of the latent GAN's random draws (fold_in data), so each draw is
independent and reproducible: the step's key folded with a purpose (+ the D step index j)."""

Z_G, Z_D, NOISE_REAL, NOISE_FAKE, GP_EPS, NOISE_G = 1, 100, 200, 300, 400, 500
# augmentation, W-space draws (offsets added to a z purpose), lazy regularizers
AUG_REAL, AUG_FAKE, AUG_G, Z_PL = 600, 700, 800, 900
W_MIX_Z, W_MIX_CUT, W_NOISE, PL_NOISE = 10_000, 20_000, 30_000, 40_000
