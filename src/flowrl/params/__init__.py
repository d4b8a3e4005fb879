"""The configuration: params.yaml read (reader), its sections (sections: the data stages, evaluate, register;
training: the models and their training) and the whole typed model with profiles applied (model)."""
