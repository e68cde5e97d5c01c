"""The story world: the people, jobs, places and things that every source of the course writes about.

The course's data is generated, so it is written about one small world, and this module is that
world's only home. The stories (the books of stage 1) and the town's website (its web pages) take
their people, jobs and places from here; the planted defects make e-mail addresses from these names;
the bias audit counts these gender words near these jobs, and the counterfactual balance swaps these
names. The later stages ask the same world: the facts of a story and questions with exact answers
(stage 6), a gold reward that stands for what the world's people value (stage 7), minimal pairs for
bias probes (stage 8). Anything that names a person, a job or a place imports it from here.

Read top to bottom:

1. People: first names by gender, surnames, relatives, and the words that mark a gender.
2. Jobs: what each job does, and the gender a stereotype gives it. The stories plant that
   stereotype on purpose (`minilm.data.sources.stories.writer.pick_gender`), so that stage 1 can
   measure and balance it and stage 8 can look for it in the trained model.
3. Places, things and animals.
4. Times: parts of a day, days and months.
5. Feelings and morals: how the people feel, what they learn, and what they find rude.
6. Story splits: the seeded story streams of pretraining, instruction tuning and the held-out
   test, and `split_stories(split, n)`, the one way any stage gets its stories.
7. The second language: every word above that a story writes, in Spanish, with its gender.

Every list is a tuple in a fixed order: the generators draw from them with seeded random choices,
so reordering a list changes every generated story and page.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# 1. People

GENDERS = ("female", "male")
NAMES = {
    "female": (
        "Mia", "Lily", "Emma", "Anna", "Sara", "Lucy", "Ella", "Zoe", "Amy", "Ruby",
        "Grace", "Chloe", "Maya", "Nora", "Ivy", "Alice", "Rosa", "Hana", "Lena", "Julia",
        "Clara", "Eva", "Sofia", "Leah", "Amara", "Priya", "Mei", "Fatima", "Nadia", "Olivia",
    ),
    "male": (
        "Tom", "Ben", "Sam", "Leo", "Max", "Jack", "Noah", "Liam", "Finn", "Oscar",
        "Hugo", "Adam", "Eli", "Theo", "Omar", "Ravi", "Kenji", "Luca", "Mateo", "Felix",
        "Jonah", "Ali", "Kofi", "Ivan", "Jamal", "Owen", "Ethan", "Daniel", "Milo", "Carlos",
    ),
}  # fmt: skip
ALL_NAMES = NAMES["female"] + NAMES["male"]
# Each name and its counterpart of the other gender (the i-th female name and the i-th male name),
# both ways: what a counterfactual swap or a minimal pair exchanges.
NAME_SWAPS = {**dict(zip(NAMES["female"], NAMES["male"])), **dict(zip(NAMES["male"], NAMES["female"]))}
SURNAMES = (
    "Ashford", "Bramley", "Whitlock", "Pemberton", "Hollis", "Marlowe", "Finch", "Lindqvist",
    "Okafor", "Tanaka", "Moreau", "Kowalski", "Haddad", "Novak", "Quinn", "Sinclair",
)  # fmt: skip
RELATIVES = ("sister", "brother", "grandmother", "grandfather", "aunt", "uncle", "cousin", "neighbour")

# Pronouns by the form a template writes (the male word) -> (female, male).
PRONOUNS = {
    "He": ("She", "He"),
    "he": ("she", "he"),
    "His": ("Her", "His"),
    "his": ("her", "his"),
    "him": ("her", "him"),
}

# The words that mark a gender, as the bias audit counts them (lowercase, plurals included).
GENDER_WORDS = {
    "female": frozenset("""
        she her hers herself woman women girl girls lady ladies mother mothers mom mum mommy mummy
        daughter daughters sister sisters aunt aunts grandma grandmother granny queen princess wife
        mrs ms madam
    """.split()),
    "male": frozenset("""
        he him his himself man men boy boys gentleman gentlemen father fathers dad daddy son sons
        brother brothers uncle uncles grandpa grandfather king prince husband mr sir
    """.split()),
}
# (female, male) word pairs that a counterfactual swap exchanges. "her" is left out: it is "him" or
# "his" depending on the word after it (see `minilm.data.filters.balance.swap_gender`).
GENDER_PAIRS = (
    ("she", "he"), ("herself", "himself"), ("hers", "his"), ("woman", "man"), ("women", "men"),
    ("girl", "boy"), ("girls", "boys"), ("mother", "father"), ("mom", "dad"), ("sister", "brother"),
    ("daughter", "son"), ("aunt", "uncle"), ("queen", "king"), ("lady", "gentleman"), ("mrs", "mr"),
    ("grandmother", "grandfather"), ("grandma", "grandpa"),
)  # fmt: skip


def pronouns(gender: str) -> dict[str, str]:
    """The pronouns of a person of `gender`, by the form a template writes: {"He": "She", "his": "her", ...}."""
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
    return {form: pair[GENDERS.index(gender)] for form, pair in PRONOUNS.items()}


# ---------------------------------------------------------------------------------------------
# 2. Jobs

# What each job does, as a phrase that fits "Every morning she ___."
JOB_ACTIONS = {
    "baker": ("baked warm bread for the whole town", "made sweet cakes and soft buns"),
    "doctor": ("helped sick people feel better", "listened to people and gave them medicine"),
    "nurse": ("cared for sick children at the hospital", "gave people medicine and kind words"),
    "teacher": ("taught the children to read and write", "helped the children learn about the stars"),
    "engineer": ("fixed big machines at the factory", "drew plans for new bridges"),
    "pilot": ("flew a big plane high above the clouds", "checked the plane before every trip"),
    "farmer": ("fed the cows and the chickens", "picked apples in the orchard"),
    "builder": ("built strong houses with bricks", "fixed roofs and walls around town"),
    "painter": ("painted bright pictures of the sea", "painted walls in happy colours"),
    "scientist": ("did careful experiments in the lab", "looked at tiny things under a microscope"),
    "cook": ("made hot soup for hungry people", "cooked rice and vegetables at a busy cafe"),
    "firefighter": ("kept the town safe from fires", "washed the big red fire truck"),
    "dancer": ("danced on a big stage", "practised new dances for hours"),
    "singer": ("sang songs for the people in town", "sang in a small band at the market"),
    "driver": ("drove a bus around the town", "drove a truck full of fruit to the market"),
    "librarian": ("helped people find good books", "put books back on the tall shelves"),
    "mechanic": ("fixed cars and bikes in a garage", "changed old tyres and oiled engines"),
    "police officer": ("kept the streets safe", "helped lost children find their parents"),
}
JOBS = tuple(JOB_ACTIONS)
# Common occupational stereotypes: the gender a skewed corpus gives each of these jobs. The other
# jobs have none, so their people are drawn half and half.
STEREOTYPED_GENDER = {
    "nurse": "female", "teacher": "female", "dancer": "female", "librarian": "female",
    "engineer": "male", "pilot": "male", "builder": "male", "mechanic": "male",
    "firefighter": "male", "police officer": "male",
}  # fmt: skip
TRAITS = ("kind", "brave", "clever", "funny", "gentle", "curious", "cheerful", "patient", "friendly", "careful")

# ---------------------------------------------------------------------------------------------
# 3. Places, things and animals

HOMES = ("sea", "hills", "river", "forest", "mountains", "lake")  # what the town lies by
HOUSE_COLOURS = ("red", "blue", "green", "yellow", "white", "pink")
PLACES = ("park", "beach", "forest", "river", "hill", "garden", "market", "lake", "farm", "playground", "meadow", "harbour")
PLACE_DESCRIPTIONS = (
    "quiet and green", "busy and loud", "bright and warm", "full of people",
    "calm and peaceful", "full of birds and flowers",
)  # fmt: skip
SIZES = ("little", "big", "small", "tiny", "shiny", "old", "new")
COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "brown")
OBJECTS = (
    "ball", "kite", "boat", "hat", "book", "bag", "box", "drum", "car", "bike",
    "scarf", "cup", "key", "lamp", "map", "shell", "ring", "train", "doll", "teddy bear",
    "umbrella", "whistle", "balloon", "pencil", "watch",
)  # fmt: skip
ANIMALS = ("duck", "bird", "frog", "goat", "fox", "squirrel", "deer", "horse", "owl", "hedgehog")
PETS = ("dog", "cat", "rabbit", "puppy", "kitten", "hamster", "turtle", "parrot")
PET_NAMES = ("Biscuit", "Pepper", "Coco", "Sunny", "Bubbles", "Patch", "Ziggy", "Muffin", "Pip", "Daisy")
FOUND_WHERE = (
    "under a big rock", "behind the old bench", "in a pile of leaves", "next to the gate",
    "under a tall tree", "near the water", "inside an empty box", "on top of the wall",
)  # fmt: skip
STORM_DAMAGE = ("the fence", "the roof of the shed", "the old tree", "the garden gate", "the big window", "the chicken coop")
GIFTS = (
    "a card with flowers on it", "a small wooden boat", "a chocolate cake", "a painted stone",
    "a new scarf", "a jar of honey", "a bunch of flowers", "a picture of the two friends",
)  # fmt: skip
BUILDS = ("treehouse", "birdhouse", "sandcastle", "raft", "cart", "doghouse", "bridge", "swing")
FRIEND_PROBLEMS = (
    "garden was full of weeds", "bike had a flat tyre", "roof was leaking", "kite was stuck in a tree",
    "fence was broken", "cat was stuck on the roof", "shop was a mess after a busy day", "car would not start",
)  # fmt: skip


def with_article(phrase: str) -> str:
    """"a red ball", "an orange kite": the article that sounds right before `phrase`."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# ---------------------------------------------------------------------------------------------
# 4. Times

DAY_TIMES = (
    "sunny morning", "bright morning", "warm afternoon", "cold morning",
    "quiet evening", "windy day", "cloudy afternoon", "lovely spring day",
)  # fmt: skip
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")  # fmt: skip

# ---------------------------------------------------------------------------------------------
# 5. Feelings and morals

GOOD_FEELINGS = ("happy", "proud", "glad", "thankful", "calm", "excited", "relieved", "safe", "joyful")
BAD_FEELINGS = ("sad", "worried", "scared", "upset", "nervous", "lonely", "angry", "frustrated")
# What a story teaches, by the kind of event it tells: the values of the world's people.
MORALS = {
    "lost_object": ("a careful search can find almost anything", "it is good to ask for help"),
    "lost_pet": ("friends help each other", "it is good to ask for help"),
    "storm": ("even a storm cannot last forever", "friends help each other"),
    "birthday": ("a gift made with love is the best gift", "being kind matters more than money"),
    "race": ("being kind matters more than winning", "trying your best is what counts"),
    "building": ("trying again is brave", "working together makes things strong"),
    "helping_friend": ("friends help each other", "being kind makes everyone happy"),
}

# What the world's people find rude when someone answers them: impolite, though not an insult (the
# insults are the toxic vocabulary of `minilm.data.truth.defects`). Stage 7's gold reward charges a
# chat answer for each, and its flawed demonstrations draw from them.
RUDE_PHRASES = (
    "Obviously.", "Everyone knows that.", "What a silly question.", "Read the story yourself next time.",
    "I already told you that.", "Figure it out yourself.", "Stop bothering me with easy questions.", "Whatever.",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 7. The second language: the same world in Spanish
#
# Every English word of the lists above that a story can write, in Spanish, so that the Spanish story
# grammar (`minilm.data.sources.stories.spanish`) can tell the same story. Spanish marks gender on
# nouns, articles and adjectives, so a word that describes a person comes as (masculine, feminine) and
# a noun comes with its own gender ("m" or "f"). The map is one to one within each list (no two English
# words share a Spanish one), so a Spanish story can be translated back exactly. Names stay as they are.

LANGUAGES = ("en", "es")  # the languages the course trains on; stage 1 removes pages in any other

ES_JOBS = {  # job -> (masculine, feminine)
    "baker": ("panadero", "panadera"), "doctor": ("médico", "médica"), "nurse": ("enfermero", "enfermera"),
    "teacher": ("maestro", "maestra"), "engineer": ("ingeniero", "ingeniera"), "pilot": ("piloto", "piloto"),
    "farmer": ("granjero", "granjera"), "builder": ("constructor", "constructora"), "painter": ("pintor", "pintora"),
    "scientist": ("científico", "científica"), "cook": ("cocinero", "cocinera"), "firefighter": ("bombero", "bombera"),
    "dancer": ("bailarín", "bailarina"), "singer": ("cantante", "cantante"), "driver": ("conductor", "conductora"),
    "librarian": ("bibliotecario", "bibliotecaria"), "mechanic": ("mecánico", "mecánica"),
    "police officer": ("policía", "policía"),
}
ES_JOB_ACTIONS = {  # "Every morning she ___." in the imperfect
    "baked warm bread for the whole town": "horneaba pan caliente para todo el pueblo",
    "made sweet cakes and soft buns": "hacía pasteles dulces y bollos blandos",
    "helped sick people feel better": "ayudaba a los enfermos a sentirse mejor",
    "listened to people and gave them medicine": "escuchaba a la gente y le daba medicinas",
    "cared for sick children at the hospital": "cuidaba a niños enfermos en el hospital",
    "gave people medicine and kind words": "daba a la gente medicinas y palabras amables",
    "taught the children to read and write": "enseñaba a los niños a leer y escribir",
    "helped the children learn about the stars": "ayudaba a los niños a aprender sobre las estrellas",
    "fixed big machines at the factory": "arreglaba máquinas grandes en la fábrica",
    "drew plans for new bridges": "dibujaba planos de puentes nuevos",
    "flew a big plane high above the clouds": "pilotaba un avión grande por encima de las nubes",
    "checked the plane before every trip": "revisaba el avión antes de cada viaje",
    "fed the cows and the chickens": "daba de comer a las vacas y a las gallinas",
    "picked apples in the orchard": "recogía manzanas en el huerto",
    "built strong houses with bricks": "construía casas fuertes con ladrillos",
    "fixed roofs and walls around town": "arreglaba tejados y paredes por el pueblo",
    "painted bright pictures of the sea": "pintaba cuadros luminosos del mar",
    "painted walls in happy colours": "pintaba paredes de colores alegres",
    "did careful experiments in the lab": "hacía experimentos cuidadosos en el laboratorio",
    "looked at tiny things under a microscope": "miraba cosas diminutas con un microscopio",
    "made hot soup for hungry people": "preparaba sopa caliente para la gente con hambre",
    "cooked rice and vegetables at a busy cafe": "cocinaba arroz y verduras en un café lleno de gente",
    "kept the town safe from fires": "protegía el pueblo de los incendios",
    "washed the big red fire truck": "lavaba el gran camión rojo de bomberos",
    "danced on a big stage": "bailaba en un escenario grande",
    "practised new dances for hours": "ensayaba bailes nuevos durante horas",
    "sang songs for the people in town": "cantaba canciones para la gente del pueblo",
    "sang in a small band at the market": "cantaba en una banda pequeña en el mercado",
    "drove a bus around the town": "conducía un autobús por el pueblo",
    "drove a truck full of fruit to the market": "llevaba un camión lleno de fruta al mercado",
    "helped people find good books": "ayudaba a la gente a encontrar buenos libros",
    "put books back on the tall shelves": "devolvía los libros a las estanterías altas",
    "fixed cars and bikes in a garage": "arreglaba coches y bicicletas en un taller",
    "changed old tyres and oiled engines": "cambiaba neumáticos viejos y engrasaba motores",
    "kept the streets safe": "mantenía seguras las calles",
    "helped lost children find their parents": "ayudaba a los niños perdidos a encontrar a sus padres",
}
ES_TRAITS = {
    "kind": ("amable", "amable"), "brave": ("valiente", "valiente"), "clever": ("listo", "lista"),
    "funny": ("gracioso", "graciosa"), "gentle": ("dulce", "dulce"), "curious": ("curioso", "curiosa"),
    "cheerful": ("alegre", "alegre"), "patient": ("paciente", "paciente"), "friendly": ("simpático", "simpática"),
    "careful": ("cuidadoso", "cuidadosa"),
}
ES_FEELINGS = {  # the good feelings and the bad ones
    "happy": ("feliz", "feliz"), "proud": ("orgulloso", "orgullosa"), "glad": ("contento", "contenta"),
    "thankful": ("agradecido", "agradecida"), "calm": ("tranquilo", "tranquila"),
    "excited": ("emocionado", "emocionada"), "relieved": ("aliviado", "aliviada"), "safe": ("seguro", "segura"),
    "joyful": ("dichoso", "dichosa"),
    "sad": ("triste", "triste"), "worried": ("preocupado", "preocupada"), "scared": ("asustado", "asustada"),
    "upset": ("disgustado", "disgustada"), "nervous": ("nervioso", "nerviosa"), "lonely": ("solo", "sola"),
    "angry": ("enfadado", "enfadada"), "frustrated": ("frustrado", "frustrada"),
}
ES_NOUNS = {  # noun -> (Spanish noun, its gender): homes, places, objects, animals, pets, builds
    "sea": ("mar", "m"), "hills": ("colinas", "fp"), "river": ("río", "m"), "forest": ("bosque", "m"),
    "mountains": ("montañas", "fp"), "lake": ("lago", "m"),
    "park": ("parque", "m"), "beach": ("playa", "f"), "hill": ("colina", "f"), "garden": ("jardín", "m"),
    "market": ("mercado", "m"), "farm": ("granja", "f"), "playground": ("patio de juegos", "m"),
    "meadow": ("prado", "m"), "harbour": ("puerto", "m"),
    "ball": ("pelota", "f"), "kite": ("cometa", "f"), "boat": ("barco", "m"), "hat": ("sombrero", "m"),
    "book": ("libro", "m"), "bag": ("bolsa", "f"), "box": ("caja", "f"), "drum": ("tambor", "m"),
    "car": ("coche", "m"), "bike": ("bicicleta", "f"), "scarf": ("bufanda", "f"), "cup": ("taza", "f"),
    "key": ("llave", "f"), "lamp": ("lámpara", "f"), "map": ("mapa", "m"), "shell": ("concha", "f"),
    "ring": ("anillo", "m"), "train": ("tren", "m"), "doll": ("muñeca", "f"), "teddy bear": ("osito de peluche", "m"),
    "umbrella": ("paraguas", "m"), "whistle": ("silbato", "m"), "balloon": ("globo", "m"), "pencil": ("lápiz", "m"),
    "watch": ("reloj", "m"),
    "duck": ("pato", "m"), "bird": ("pájaro", "m"), "frog": ("rana", "f"), "goat": ("cabra", "f"),
    "fox": ("zorro", "m"), "squirrel": ("ardilla", "f"), "deer": ("ciervo", "m"), "horse": ("caballo", "m"),
    "owl": ("búho", "m"), "hedgehog": ("erizo", "m"),
    "dog": ("perro", "m"), "cat": ("gato", "m"), "rabbit": ("conejo", "m"), "puppy": ("cachorro", "m"),
    "kitten": ("gatito", "m"), "hamster": ("hámster", "m"), "turtle": ("tortuga", "f"), "parrot": ("loro", "m"),
    "treehouse": ("casita en el árbol", "f"), "birdhouse": ("casita para pájaros", "f"),
    "sandcastle": ("castillo de arena", "m"), "raft": ("balsa", "f"), "cart": ("carrito", "m"),
    "doghouse": ("caseta de perro", "f"), "bridge": ("puente", "m"), "swing": ("columpio", "m"),
}
ES_ADJECTIVES = {  # sizes and colours -> (masculine, feminine), written after the noun
    "little": ("chiquito", "chiquita"), "big": ("grande", "grande"), "small": ("pequeño", "pequeña"),
    "tiny": ("diminuto", "diminuta"), "shiny": ("brillante", "brillante"), "old": ("viejo", "vieja"),
    "new": ("nuevo", "nueva"),
    "red": ("rojo", "roja"), "blue": ("azul", "azul"), "green": ("verde", "verde"), "yellow": ("amarillo", "amarilla"),
    "orange": ("naranja", "naranja"), "purple": ("morado", "morada"), "pink": ("rosa", "rosa"),
    "white": ("blanco", "blanca"), "black": ("negro", "negra"), "brown": ("marrón", "marrón"),
}
ES_PLACE_DESCRIPTIONS = {  # -> (masculine, feminine): "the park was ___"
    "quiet and green": ("tranquilo y verde", "tranquila y verde"), "busy and loud": ("animado y ruidoso", "animada y ruidosa"),
    "bright and warm": ("luminoso y cálido", "luminosa y cálida"), "full of people": ("lleno de gente", "llena de gente"),
    "calm and peaceful": ("sereno y apacible", "serena y apacible"),
    "full of birds and flowers": ("lleno de pájaros y flores", "llena de pájaros y flores"),
}
ES_PHRASES = {  # phrases a story writes whole
    # day times, as "one ___"
    "sunny morning": "una mañana soleada", "bright morning": "una mañana luminosa", "warm afternoon": "una tarde cálida",
    "cold morning": "una mañana fría", "quiet evening": "una noche tranquila", "windy day": "un día de viento",
    "cloudy afternoon": "una tarde nublada", "lovely spring day": "un precioso día de primavera",
    # where a lost thing was found
    "under a big rock": "debajo de una roca grande", "behind the old bench": "detrás del banco viejo",
    "in a pile of leaves": "en un montón de hojas", "next to the gate": "junto a la verja",
    "under a tall tree": "debajo de un árbol alto", "near the water": "cerca del agua",
    "inside an empty box": "dentro de una caja vacía", "on top of the wall": "encima del muro",
    # what a storm broke
    "the fence": "la valla", "the roof of the shed": "el tejado del cobertizo", "the old tree": "el árbol viejo",
    "the garden gate": "la puerta del jardín", "the big window": "la ventana grande", "the chicken coop": "el gallinero",
    # gifts
    "a card with flowers on it": "una tarjeta con flores", "a small wooden boat": "un barquito de madera",
    "a chocolate cake": "un pastel de chocolate", "a painted stone": "una piedra pintada", "a new scarf": "una bufanda nueva",
    "a jar of honey": "un tarro de miel", "a bunch of flowers": "un ramo de flores",
    "a picture of the two friends": "un dibujo de los dos amigos",
    # a friend's problem: "sad because her ___"
    "garden was full of weeds": "jardín estaba lleno de malas hierbas", "bike had a flat tyre": "bicicleta tenía una rueda pinchada",
    "roof was leaking": "tejado tenía goteras", "kite was stuck in a tree": "cometa se había quedado en un árbol",
    "fence was broken": "valla estaba rota", "cat was stuck on the roof": "gato no podía bajar del tejado",
    "shop was a mess after a busy day": "tienda estaba desordenada tras un día de mucho trabajo",
    "car would not start": "coche no arrancaba",
    # morals: "she learned that ___"
    "a careful search can find almost anything": "buscando con cuidado se encuentra casi todo",
    "it is good to ask for help": "es bueno pedir ayuda", "friends help each other": "los amigos se ayudan",
    "even a storm cannot last forever": "ni una tormenta dura para siempre",
    "a gift made with love is the best gift": "un regalo hecho con cariño es el mejor regalo",
    "being kind matters more than money": "ser amable importa más que el dinero",
    "being kind matters more than winning": "ser amable importa más que ganar",
    "trying your best is what counts": "lo que cuenta es dar lo mejor de uno",
    "trying again is brave": "volver a intentarlo es de valientes",
    "working together makes things strong": "trabajar juntos hace las cosas fuertes",
    "being kind makes everyone happy": "ser amable hace felices a todos",
}


# ---------------------------------------------------------------------------------------------
# 6. Story splits: which stories each stage may read

# The stories of the whole course come from seeded streams (`writer.iter_stories(n, seed)`), one
# stream per split. Pretraining reads the data stage's stream (`DataConfig.seed`, 1337, and its
# preset's `n_stories`); instruction tuning reads its own two streams; the test stream is read only
# by evaluations (stages 6, 7 and 8), never by a training stage, so a model cannot have seen a
# test story. A stream's first n stories are the same whatever n is, so a bigger split only adds
# stories. Different seeds give different random streams, and a test (tests/test_finetune_data.py)
# checks that no story text is shared between the splits; `minilm.finetune.tasks.contamination`
# measures what they still share (template sentences: the world is small on purpose).
STORY_SPLITS = {
    "pretrain": 1337,  # = minilm.data.stage.DataConfig.seed: the stories stage 1 writes into the corpus
    "pretrain_es": 7_001,  # = DataConfig.spanish_seed: the Spanish stories of the corpus (their English is not in it)
    "sft_train": 6_001,  # instruction tuning (stage 6)
    "sft_val": 6_002,  # its validation loss and early checks
    "test": 9_001,  # held out: evaluation only (stages 6, 7, 8)
}


def split_stories(split: str, n: int, bias: float = 0.8, spanish: bool = False) -> list[tuple[str, dict]]:
    """The first `n` stories of `split` (a key of `STORY_SPLITS`) as (text, facts) pairs.

    `split_stories("pretrain", n_stories)` is exactly the stories the data stage generates (before it
    wraps some as e-books and plants its defects); `bias` is the job-gender skew of the writer
    (the data stage's default, 0.8). Later stages ask this function for their stories:
    `split_stories("test", 200)` gives the evaluation stories and their facts (`facts["qa"]`).
    With `spanish`, the same stories come with their Spanish translation in `facts["spanish"]`.
    """
    from minilm.data.sources.stories.writer import iter_stories  # the writer imports the world

    if split not in STORY_SPLITS:
        raise ValueError(f"unknown story split {split!r}; the splits are {sorted(STORY_SPLITS)}")
    stories = iter_stories(n, STORY_SPLITS[split], bias, spanish=spanish)
    return [(doc.text, {**doc.labels["facts"], "spanish": doc.labels["spanish"]} if spanish else doc.labels["facts"])
            for doc in stories]
