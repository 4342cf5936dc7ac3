"""In-plane alignment: rotated references and band-limited Fourier cross-correlation.

Conventions (x = column, y = row, centre at pixel ``B // 2`` of a ``B``-pixel box): a particle
aligned to a reference with rotation ``psi`` and shift ``s`` satisfies
``particle(x) ~ rotated(reference, psi)(x - s)``, where ``rotated(ref, psi)(x) =
ref(R(-psi) x)`` and ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` acts on ``(x, y)``. So ``s``
is where the particle's centre sits in its box, and ``particle(R(psi) x + s) ~ reference(x)``
undoes the alignment.

The references are rotated, never the particles: the particles' Fourier coefficients are
computed once, each reference is rotated ``R`` times per iteration, and the correlation of a
particle with all ``K x R`` rotated references at every shift of a small grid is one matrix
product (the Fourier-space cross-correlation evaluated only at the shifts searched, and only
at the low frequencies that noisy particles align on).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sample_images(images: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``out(x) = image(R(angle) x + shift)`` around the box centre, bilinear, zero outside.

    Parameters
    ----------
    images : torch.Tensor
        ``(n, B, B)`` images.
    angles : torch.Tensor
        ``(n,)`` angles in degrees.
    shifts : torch.Tensor
        ``(n, 2)`` shifts ``(x, y)`` in pixels.

    Returns
    -------
    torch.Tensor
        ``(n, B, B)`` resampled images.
    """
    n, size = images.shape[0], images.shape[-1]
    radians = torch.deg2rad(angles.to(images.dtype))
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid works in normalised coordinates (align_corners=False: pixel i sits at
    # (2 i + 1) / B - 1); the box centre B // 2 sits at d.
    d = (2 * (size // 2) + 1) / size - 1
    theta = torch.empty(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, 0, 2] = -(cos - sin) * d + 2 * shifts[:, 0] / size + d
    theta[:, 1, 2] = -(sin + cos) * d + 2 * shifts[:, 1] / size + d
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(
        images[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out[:, 0]


def rotate_images(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Every image at every angle (the rotated references).

    Parameters
    ----------
    images : torch.Tensor
        ``(k, B, B)`` images.
    angles : torch.Tensor
        ``(r,)`` angles in degrees.

    Returns
    -------
    torch.Tensor
        ``(k * r, B, B)``: row ``i * r + j`` is image ``i`` rotated by ``angles[j]``
        (``rotated(ref, psi)`` of the module docstring).
    """
    k, r = images.shape[0], angles.shape[0]
    repeated = images.repeat_interleave(r, dim=0)
    tiled = (-angles).repeat(k)
    return sample_images(repeated, tiled, torch.zeros(k * r, 2, dtype=images.dtype))


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``out(x) = image(x + shift)`` by a Fourier phase ramp (sub-pixel, periodic).

    Parameters
    ----------
    images : torch.Tensor
        ``(n, B, B)`` images.
    shifts : torch.Tensor
        ``(n, 2)`` shifts ``(x, y)`` in pixels.

    Returns
    -------
    torch.Tensor
        ``(n, B, B)``.
    """
    size = images.shape[-1]
    ky = torch.fft.fftfreq(size, device=images.device, dtype=images.dtype)
    kx = torch.fft.rfftfreq(size, device=images.device, dtype=images.dtype)
    phase = (
        2
        * torch.pi
        * (
            ky[None, :, None] * shifts[:, 1, None, None]
            + kx[None, None, :] * shifts[:, 0, None, None]
        )
    )
    spectrum = torch.fft.rfft2(images) * torch.polar(torch.ones_like(phase), phase)
    return torch.fft.irfft2(spectrum, s=(size, size))


@dataclass(frozen=True)
class Band:
    """The Fourier coefficients alignment uses: a half-plane disk without the origin.

    Attributes
    ----------
    size : int
        Box side B.
    index : torch.Tensor
        Flat indices into an ``rfft2`` spectrum ``(B, B // 2 + 1)``.
    ky, kx : torch.Tensor
        Their frequencies in cycles per box.
    weight : torch.Tensor
        2 for coefficients whose conjugate is not stored (``kx > 0``), else 1: sums over the
        band equal sums over the whole disk.
    """

    size: int
    index: torch.Tensor
    ky: torch.Tensor
    kx: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def disk(cls, size: int, radius: float, device: torch.device | str = "cpu") -> Band:
        """The band of frequencies with ``0 < |k| <= radius`` (cycles per box).

        Parameters
        ----------
        size : int
            Box side B.
        radius : float
            Band limit in Fourier pixels.
        device : torch.device or str
            Where the index tensors live.

        Returns
        -------
        Band
        """
        ky = torch.fft.fftfreq(size, d=1.0 / size)
        kx = torch.fft.rfftfreq(size, d=1.0 / size)
        kyy, kxx = torch.meshgrid(ky, kx, indexing="ij")
        r2 = kyy**2 + kxx**2
        keep = (r2 <= radius**2) & (r2 > 0)
        index = torch.nonzero(keep.reshape(-1)).reshape(-1)
        weight = torch.where(kxx.reshape(-1)[index] > 0, 2.0, 1.0)
        return cls(
            size=size,
            index=index.to(device),
            ky=kyy.reshape(-1)[index].to(device),
            kx=kxx.reshape(-1)[index].to(device),
            weight=weight.to(device),
        )

    def coefficients(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, B, B)`` images -> ``(n, M)`` complex band coefficients."""
        spectrum = torch.fft.rfft2(images).reshape(images.shape[0], -1)
        return spectrum[:, self.index]

    def phases(self, shifts: torch.Tensor) -> torch.Tensor:
        """``(s, 2)`` shifts (x, y) -> ``(s, M)`` complex ``exp(2 pi i k.s / B)``."""
        angle = (
            2
            * torch.pi
            * (shifts[:, 1, None] * self.ky[None] + shifts[:, 0, None] * self.kx[None])
            / self.size
        )
        return torch.polar(torch.ones_like(angle), angle)

    def power(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Sum of squared magnitudes over the whole disk, ``(n,)``."""
        return (self.weight * coefficients.abs() ** 2).sum(dim=-1)


def shift_grid(max_shift: float, step: float) -> torch.Tensor:
    """The coarse shifts searched: a square grid of ``step`` within ``max_shift``.

    Parameters
    ----------
    max_shift : float
        Largest shift on each axis, in pixels.
    step : float
        Grid spacing in pixels.

    Returns
    -------
    torch.Tensor
        ``(s, 2)`` shifts ``(x, y)``, (0, 0) included.
    """
    n = int(max_shift // step)
    values = torch.arange(-n, n + 1, dtype=torch.float32) * step
    yy, xx = torch.meshgrid(values, values, indexing="ij")
    return torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=-1)


@dataclass
class Alignment:
    """Best rotated reference and shift for each particle of a batch.

    Attributes
    ----------
    reference : torch.Tensor
        ``(n,)`` index of the best class.
    angle : torch.Tensor
        ``(n,)`` rotation psi in degrees (refined between the sampled angles).
    shift : torch.Tensor
        ``(n, 2)`` shift (x, y) in pixels (refined to sub-pixel).
    score : torch.Tensor
        ``(n,)`` normalised cross-correlation at the best pose, in [-1, 1].
    certainty : torch.Tensor
        ``(n,)`` posterior probability, under white Gaussian noise, that the rotation lies
        within one sampling step of the best one (of the best class, every coarse shift).
        Near 1 for a clear asymmetric particle; near ``3 / R`` when noise leaves the rotation
        undecided (lower also for a symmetric particle, whose equivalent rotations share it).
    evidence : torch.Tensor
        ``(n,)`` log-likelihood ratio of "this class at a uniformly random coarse pose"
        against "noise alone" (the pose marginalised, not maximised): noise fitted by
        choosing among many poses does not raise it.
    shift_shrink : torch.Tensor
        ``(n, 2)`` posterior-mean coarse shift minus the best coarse shift: added to
        ``shift``, an uncertain shift moves towards the posterior mean (0 for a clear peak).
    class_angle : torch.Tensor
        ``(n, K)`` the best sampled rotation (degrees) of each particle in every class, and
    class_shift : torch.Tensor
        ``(n, K, 2)`` the best coarse shift there (unrefined): where soft assignment
        (:attr:`.settings.ClassifySettings.soft_temperature`) puts a particle's share in a
        class other than its best.
    """

    reference: torch.Tensor
    angle: torch.Tensor
    shift: torch.Tensor
    score: torch.Tensor
    certainty: torch.Tensor | None = None
    evidence: torch.Tensor | None = None
    shift_shrink: torch.Tensor | None = None
    class_angle: torch.Tensor | None = None
    class_shift: torch.Tensor | None = None


class Aligner:
    """Aligns band coefficients of particles to ``K`` references over rotations and shifts.

    Built once per iteration from the references; :meth:`align` takes batches of particles.

    Parameters
    ----------
    references : torch.Tensor
        ``(K, B, B)`` references (masked, centred).
    band : Band
        Frequencies used.
    angles : torch.Tensor
        ``(R,)`` rotations in degrees, evenly spaced over 360.
    shifts : torch.Tensor
        ``(S, 2)`` coarse shift grid (see :func:`shift_grid`).
    shift_step : float
        Spacing of the coarse grid; the best shift is refined on a grid of half that.
    noise_power : float, optional
        Expected ``|F|^2`` of the noise per band coefficient (:meth:`Band.power` of a noise
        image over the number of coefficients in the disk): with it, :meth:`align` also
        reports each particle's pose ``certainty``, ``evidence`` and ``shift_shrink``.
    """

    #: Finer rotations per sampled step, searched around each particle's best rotation.
    SUBSTEPS = 4
    #: Coarse poses refined per particle.
    CANDIDATES = 3

    def __init__(
        self,
        references: torch.Tensor,
        band: Band,
        angles: torch.Tensor,
        shifts: torch.Tensor,
        shift_step: float,
        noise_power: float | None = None,
    ) -> None:
        self.band = band
        self.noise_power = noise_power
        self.angles = angles
        self.n_classes = references.shape[0]
        self.n_rotations = angles.shape[0]
        self.shifts = shifts.to(references.device)
        self.shift_step = float(shift_step)
        r, sub = angles.shape[0], self.SUBSTEPS
        fine_angles = (torch.arange(r * sub, dtype=references.dtype) * (360.0 / (r * sub))).to(
            references.device
        )
        fine = band.coefficients(rotate_images(references, fine_angles))  # (K R sub, M)
        power = band.power(fine).clamp_min(1e-12)
        self.reference_power = power.reshape(self.n_classes, -1).mean(dim=1)  # (K,)
        fine = fine / power.sqrt()[:, None]
        self.fine_coefficients = fine
        coefficients = fine.reshape(self.n_classes, r, sub, -1)[:, :, 0].reshape(
            self.n_classes * r, -1
        )  # (K R, M): the sampled rotations
        self.rotated_coefficients = coefficients
        # cc(n, s, j) = sum_k w Re(F_n(k) e^{2 pi i k.s / B} conj(G_j(k))): the shifts' phases
        # go into the references, so a batch of particles is one product (n, 2M) @ (2M, K R S).
        phase = band.phases(self.shifts)  # (S, M)
        shifted = band.weight * phase[None] * coefficients.conj()[:, None]  # (K R, S, M)
        shifted = shifted.reshape(-1, shifted.shape[-1])
        self.matrix = torch.cat((shifted.real, -shifted.imag), dim=1).T.contiguous()
        offsets = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]) * self.shift_step
        oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
        self.fine_offsets = torch.stack((ox.reshape(-1), oy.reshape(-1)), dim=-1).to(
            references.device
        )
        self.fine_phase = band.phases(self.fine_offsets)  # (25, M)

    def correlate(self, particles: torch.Tensor) -> torch.Tensor:
        """Normalised correlations ``(n, K R, S)`` of band coefficients at the coarse shifts."""
        norm = self.band.power(particles).clamp_min(1e-12).sqrt()
        unit = particles / norm[:, None]
        stacked = torch.cat((unit.real, unit.imag), dim=1)  # (n, 2M)
        return (stacked @ self.matrix).reshape(particles.shape[0], -1, self.shifts.shape[0])

    def _local(
        self, particles: torch.Tensor, references: torch.Tensor, shifts: torch.Tensor
    ) -> torch.Tensor:
        """Correlation ``(n, 25)`` of particle i with reference i at ``shifts[i] +`` each fine
        offset (``shifts``: ``(n, 2)``)."""
        norm = self.band.power(particles).clamp_min(1e-12).sqrt()
        product = self.band.weight * particles * references.conj() / norm[:, None]  # (n, M)
        shifted = product * self.band.phases(shifts)  # e^{ik.s0}
        return (shifted @ self.fine_phase.T).real  # times e^{ik.o} for each offset o

    def _refine_shift(
        self, particles: torch.Tensor, references: torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Best shift near ``start`` (5 x 5 grid of half the coarse step, then a parabola)
        of particle i against reference i, and the correlation there."""
        n = particles.shape[0]
        rows = torch.arange(n, device=particles.device)
        local = self._local(particles, references, start)  # (n, 25)
        grid = local.reshape(n, 5, 5)  # [y offset, x offset]
        best = local.argmax(dim=1)
        iy, ix = best // 5, best % 5
        cy, cx = iy.clamp(1, 3), ix.clamp(1, 3)
        dx = _parabola_vertex(grid[rows, cy, cx - 1], grid[rows, cy, cx], grid[rows, cy, cx + 1])
        dy = _parabola_vertex(grid[rows, cy - 1, cx], grid[rows, cy, cx], grid[rows, cy + 1, cx])
        dx = torch.where(ix == cx, dx, torch.zeros_like(dx))  # at the edge: no parabola
        dy = torch.where(iy == cy, dy, torch.zeros_like(dy))
        fine = start + self.fine_offsets[best]
        return fine + torch.stack((dx, dy), dim=-1) * (self.shift_step / 2), local[rows, best]

    def align(self, particles: torch.Tensor) -> tuple[Alignment, torch.Tensor]:
        """Best pose of each particle; also its best score per class.

        Parameters
        ----------
        particles : torch.Tensor
            ``(n, M)`` complex band coefficients (:meth:`Band.coefficients`).

        Returns
        -------
        Alignment
            The best class, angle, shift and score of each particle.
        torch.Tensor
            ``(n, K)`` best score of each particle per class (any rotation and shift).
        """
        n = particles.shape[0]
        k, r = self.n_classes, self.n_rotations
        cc = self.correlate(particles)  # (n, K R, S)
        best_per_ref, best_shift_index = cc.max(dim=2)  # (n, K R)
        per_class, class_rotation = best_per_ref.reshape(n, k, r).max(dim=2)  # (n, K)
        class_shift_index = best_shift_index.reshape(n, k, r).gather(2, class_rotation[..., None])
        # The few best coarse poses are refined; the best refined pose wins (a coarse grid can
        # rank a neighbouring rotation first).
        top = min(self.CANDIDATES, k * r)
        _, candidates = best_per_ref.topk(top, dim=1)  # (n, T)
        rows = torch.arange(n, device=particles.device).repeat_interleave(top)
        flat = candidates.reshape(-1)
        refined = self._refine(
            particles.repeat_interleave(top, dim=0),
            flat,
            self.shifts[best_shift_index[rows, flat]],
        )
        winner = refined.score.reshape(n, top).argmax(dim=1)
        pick = torch.arange(n, device=particles.device) * top + winner
        alignment = Alignment(
            reference=refined.reference[pick],
            angle=refined.angle[pick],
            shift=refined.shift[pick],
            score=refined.score[pick],
            class_angle=self.angles.to(particles.device)[class_rotation],
            class_shift=self.shifts[class_shift_index[..., 0]],
        )
        if self.noise_power is not None:
            alignment = self._posterior(particles, cc, alignment)
        return alignment, per_class

    def class_log_likelihoods(
        self, particles: torch.Tensor, per_class: torch.Tensor
    ) -> torch.Tensor:
        """Log-likelihood of each class at its best pose, under white noise (needs
        ``noise_power``): ``cc |x| |A_k| / s2 - |A_k|^2 / (2 s2)``, up to a constant per
        particle.

        Parameters
        ----------
        particles : torch.Tensor
            ``(n, M)`` band coefficients, as given to :meth:`align`.
        per_class : torch.Tensor
            ``(n, K)`` best correlation per class (:meth:`align`'s second result).

        Returns
        -------
        torch.Tensor
            ``(n, K)``.

        Raises
        ------
        ValueError
            If the aligner was built without ``noise_power``.
        """
        if self.noise_power is None:
            raise ValueError("class log-likelihoods need the noise power")
        norm = self.band.power(particles).clamp_min(1e-12).sqrt()
        amplitude = self.reference_power.sqrt()
        return (per_class * norm[:, None] * amplitude[None] - self.reference_power[None] / 2) / (
            self.noise_power
        )

    def _posterior(
        self, particles: torch.Tensor, cc: torch.Tensor, alignment: Alignment
    ) -> Alignment:
        """Add pose certainty, evidence and shift shrink (white noise model).

        With the noise's power ``s2`` per coefficient, the log-likelihood of a pose, up to a
        constant per class, is ``cc |x| |A| / s2``. Over the coarse rotations and shifts of
        the best class this gives a posterior: its mass within a sampling step of the
        best rotation is the certainty, its log-mean-exp less
        ``|A|^2 / (2 s2)`` the evidence, and the posterior-mean minus the best coarse shift the
        shift's shrink (nothing for a clear peak).
        """
        assert self.noise_power is not None
        n = particles.shape[0]
        k, r, s = self.n_classes, self.n_rotations, self.shifts.shape[0]
        rows = torch.arange(n, device=particles.device)
        norm = self.band.power(particles).clamp_min(1e-12).sqrt()
        reference_power = self.reference_power[alignment.reference]
        scale = norm * reference_power.sqrt() / self.noise_power
        logits = cc.reshape(n, k, r * s)[rows, alignment.reference] * scale[:, None]
        posterior = torch.softmax(logits, dim=1).reshape(n, r, s)
        by_rotation = posterior.sum(dim=2)  # (n, R)
        nearest = torch.round(alignment.angle / (360.0 / r)).long() % r
        window = torch.stack([(nearest + d) % r for d in (-1, 0, 1)], dim=1)
        certainty = by_rotation.gather(1, window).sum(dim=1) if r > 3 else by_rotation.sum(1)
        by_shift = posterior.sum(dim=1)  # (n, S)
        mean_shift = by_shift @ self.shifts
        best_shift = self.shifts[by_shift.argmax(dim=1)]
        evidence = (
            torch.logsumexp(logits, dim=1)
            - torch.log(torch.tensor(float(r * s)))
            - reference_power / (2 * self.noise_power)
        )
        return Alignment(
            reference=alignment.reference,
            angle=alignment.angle,
            shift=alignment.shift,
            score=alignment.score,
            certainty=certainty,
            evidence=evidence,
            shift_shrink=mean_shift - best_shift,
            class_angle=alignment.class_angle,
            class_shift=alignment.class_shift,
        )

    def _refine(
        self,
        particles: torch.Tensor,
        best: torch.Tensor,
        coarse_shift: torch.Tensor,
    ) -> Alignment:
        """Refine each particle's pose from rotated reference ``best`` at ``coarse_shift``."""
        n = particles.shape[0]
        r = self.n_rotations
        rows = torch.arange(n, device=particles.device)
        reference, rotation = best // r, best % r
        # Shift: a grid of half the coarse step covering the cells around the coarse best,
        # then a parabola; angle: the finer rotations around the best, then a parabola; then
        # the shift again for the finer rotation.
        shift, score = self._refine_shift(particles, self.rotated_coefficients[best], coarse_shift)
        sub = self.SUBSTEPS
        candidates = torch.stack(
            [reference * r * sub + (rotation * sub + d) % (r * sub) for d in range(-2, 3)], dim=1
        )  # (n, 5) rows of fine_coefficients
        values = self._local(
            particles.repeat_interleave(5, dim=0),
            self.fine_coefficients[candidates.reshape(-1)],
            shift.repeat_interleave(5, dim=0),
        )[:, 12].reshape(n, 5)  # offset 12 of the 5 x 5 grid is (0, 0)
        pick = values.argmax(dim=1).clamp(1, 3)
        vertex = _parabola_vertex(
            values[rows, pick - 1], values[rows, pick], values[rows, pick + 1]
        )
        step = 360.0 / (r * sub)
        angle = self.angles.to(particles.device)[rotation] + step * ((pick - 2) + vertex)
        chosen = candidates[rows, pick]
        shift, fine_score = self._refine_shift(particles, self.fine_coefficients[chosen], shift)
        score = torch.maximum(score, fine_score)
        return Alignment(reference=reference, angle=angle % 360.0, shift=shift, score=score)


def _parabola_vertex(before: torch.Tensor, centre: torch.Tensor, after: torch.Tensor):
    """Offset in [-0.5, 0.5] (grid steps) of the vertex of the parabola through three points."""
    denominator = before - 2 * centre + after
    offset = 0.5 * (before - after) / torch.where(denominator.abs() > 1e-12, denominator, -1e-12)
    return offset.clamp(-0.5, 0.5)
