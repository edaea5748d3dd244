-- What a model was found to accept, learned from its answers (not user data): whether it takes
-- image input. A model that refused an image is sent text only from then on, by every process
-- of a fleet and after a restart. sees_images: 1 it took an image, 0 it refused one.
CREATE TABLE model_capabilities (
    model TEXT PRIMARY KEY,
    sees_images INTEGER NOT NULL,
    learned_at REAL NOT NULL
);
