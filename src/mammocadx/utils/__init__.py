"""Small cross-cutting helpers (reproducibility) that no single pipeline stage owns."""
