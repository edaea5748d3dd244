-- (PostgreSQL twin of sqlite/0016_model_capabilities.sql.) What a model was found to accept,
-- learned from its answers (not user data): whether it takes image input, so that a model that
-- refused an image is sent text only from then on, by every process and after a restart.
-- sees_images: 1 it took an image, 0 it refused one.
CREATE TABLE model_capabilities (
    model TEXT PRIMARY KEY,
    sees_images INTEGER NOT NULL,
    learned_at DOUBLE PRECISION NOT NULL
);
