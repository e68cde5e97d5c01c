"""The Spanish story grammar: the same stories, in a second language, sentence for sentence.

Every English template of `grammar.STORY_TEMPLATES` has its mirror here, at the same role and the same
index, with the same meaning; the writer chooses a template once, so a story has an exact Spanish
translation (`translate`), and a parallel corpus costs nothing to make. The slot values come from the
same cast, through the Spanish words of the world (`minilm.world`, section 7).

What Spanish needs that English does not is agreement: an article, an adjective or a past participle
takes the gender of the noun it goes with ("una panadera", "la pelota roja", "estaba cansada"). So the
Spanish slots are derived from the English cast with the genders in hand (`spanish_slots`): the
hero's job with its article, the feelings in the hero's gender, the place with its article and
preposition ("al parque", "a la playa"), and one-letter endings for the few fixed words that agree:
{o} with the hero, {fo} with the friend, {po} with the pet, {bo} with what is built, {ao} with the
animal, {os} with the two friends together ("juntos", or "juntas" when both are women).

The grammar reads backwards as the English one does (`accepts`): each value implies features (a
gender, a job, a place), and a sentence is accepted only if they agree wherever they occur.

One thing English says and Spanish does not: whose. "Su pelota" is his ball or her ball, so a Spanish
sentence alone can have two English translations; within its story it has one (the hero's gender is
known). Everything else translates back exactly: no two English templates or words share a Spanish one.
The other way, English leaves some things to the story that Spanish must say ("They had lunch together":
"juntos" or "juntas"?); `determined` says which sentences translate alone, in either direction, which is
what a translation task with one exact answer needs (stage 6).
"""

from __future__ import annotations

from functools import cache

from minilm.data.sources.stories.grammar import STORY_TEMPLATES, SlotFeatures, compile_templates, match, template_slots
from minilm.world import (
    ANIMALS, BAD_FEELINGS, BUILDS, COLOURS, DAY_TIMES, ES_ADJECTIVES, ES_FEELINGS, ES_JOB_ACTIONS, ES_JOBS, ES_NOUNS,
    ES_PHRASES, ES_PLACE_DESCRIPTIONS, ES_TRAITS, FOUND_WHERE, FRIEND_PROBLEMS, GENDERS, GIFTS, GOOD_FEELINGS, HOMES,
    HOUSE_COLOURS, JOB_ACTIONS, JOBS, MORALS, NAMES, OBJECTS, PET_NAMES, PETS, PLACE_DESCRIPTIONS, PLACES, SIZES,
    STORM_DAMAGE, TRAITS,
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# 1. Roles -> Spanish templates, index for index with the English ones

STORY_TEMPLATES_ES: dict[str, tuple[str, ...]] = {
    # -- introduction ------------------------------------------------------------------------
    "intro.open": (
        "Había una vez {a_job} que se llamaba {hero}.",
        "Érase una vez {a_job} llamad{o} {hero}.",
        "Hace mucho tiempo, en un pueblo tranquilo, vivía {a_job} que se llamaba {hero}.",
        "En un pueblo pequeño junto {home_al}, vivía {a_job} llamad{o} {hero}.",
        "{hero} era {a_job} que vivía en un pueblo pequeño junto {home_al}.",
        "Esta es la historia de {a_job} que se llamaba {hero}.",
    ),
    "intro.job": (
        "Cada mañana {el} {job_action}.",
        "Todos los días {el} {job_action}, y la gente se lo agradecía.",
        "A {el} le encantaba ser {job}, y trabajaba mucho cada día.",
        "{hero} era {a_job} muy buen{o}, y todo el pueblo {lo} conocía.",
        "Ser {job} no siempre era fácil, pero a {hero} le encantaba.",
        "Casi todos los días {el} {job_action}.",
    ),
    "intro.trait": (
        "{hero} era {trait} y siempre estaba dispuest{o} a ayudar.",
        "Todos decían que {hero} era muy {trait}.",
        "{El} era {trait}, y tenía una gran sonrisa.",
        "Sus vecinos {lo} querían porque {el} era muy {trait}.",
    ),
    "intro.home": (
        "{El} vivía en una casita con una puerta {house_colour}.",
        "{hero} vivía con su abuela en una casita acogedora.",
        "Su casa estaba cerca {home_del}, y {el} podía ver{home_lo} desde su ventana.",
    ),
    "intro.likes": (
        "A {hero} le gustaban la música, los paseos largos y la sopa caliente.",
        "En su tiempo libre, a {el} le gustaba leer libros y hacer dibujos.",
        "A {el} le gustaba cantar mientras trabajaba.",
        "Los domingos, a {el} le gustaba dormir hasta tarde y comer tortitas.",
    ),
    "intro.object": (
        "{hero} tenía {a_obj} que quería muchísimo.",
        "{El} siempre llevaba consigo su {obj}.",
        "Su {obj} era un regalo de su abuela.",
        "{hero} quería a su {obj} más que a nada.",
    ),
    "intro.pet": (
        "{hero} tenía {a_pet} que se llamaba {pet}.",
        "{pet} era {el_pet} de {hero}, y le encantaba correr y jugar.",
        "En casa, {hero} vivía con {pet}, {a_pet} con muchas ganas de jugar.",
    ),
    # -- the friend --------------------------------------------------------------------------
    "friend.intro": (
        "{hero} tenía {fun} mejor amig{fo} que se llamaba {friend}.",
        "Su mejor amig{fo} era {friend}, que vivía en la misma calle.",
        "{friend} era {fel_art} mejor amig{fo} de {hero}.",
        "{hero} y {friend} eran amig{os} desde que eran pequeñ{os}.",
    ),
    "friend.job": (
        "{friend} era {a_friend_job}, y {fel} {friend_job_action}.",
        "{friend} trabajaba de {friend_job} al otro lado del pueblo.",
        "Cada mañana {friend} {friend_job_action}.",
    ),
    "friend.trait": (
        "{fEl} tenía una risa fuerte y un corazón bondadoso.",
        "A {friend} le gustaba contar historias divertidas.",
        "{friend} era un poco tímid{fo}, pero muy list{fo}.",
    ),
    "friend.together": (
        "A {los} dos amig{os} les gustaba ir andando junt{os} {al_place}.",
        "A menudo comían junt{os} y hablaban de su día.",
        "Los fines de semana, {hero} y {friend} jugaban y contaban chistes.",
        "{friend} siempre hacía reír a {hero}.",
        "Cuando había un día triste, siempre se ayudaban.",
    ),
    # -- the setting -------------------------------------------------------------------------
    "setting.go": (
        "{Una_day_time}, {hero} fue {al_place}.",
        "En {una_day_time}, {hero} caminó hasta {el_place}.",
        "{Una_day_time}, {hero} y {friend} fueron {al_place}.",
        "En {una_day_time}, {hero} llevó su {obj} {al_place}.",
    ),
    "setting.place": (
        "{El_place} estaba {place_desc}.",
        "Brillaba el sol, y {el_place} estaba {place_desc}.",
        "Era el lugar favorito de {hero} en todo el pueblo.",
        "Los pájaros cantaban en los árboles cerca {del_place}.",
    ),
    "setting.sky": (
        "El cielo estaba azul, y soplaba un viento suave.",
        "Muchos niños jugaban y reían cerca de allí.",
        "Alguien vendía helados cerca del camino.",
        "La hierba todavía estaba mojada, y el aire era fresco.",
    ),
    "setting.animal": (
        "Cerca {del_place}, {el} vio {a_animal}.",
        "{Un_animal} pequeñ{ao} dormía debajo de un árbol.",
        "{hero} saludó a {a_animal} que jugaba en la hierba.",
    ),
    # -- shared feelings ---------------------------------------------------------------------
    "feel.bad": (
        "{El} se sentía {bad_feeling} y tenía ganas de llorar.",
        "{hero} estaba muy {bad_feeling}.",
        "Tenía el corazón apesadumbrado, y {el} estaba {bad_feeling}.",
        "Por un momento, {hero} se sintió {bad_feeling}.",
    ),
    # -- event: a lost object ----------------------------------------------------------------
    "lost.before": (
        "{hero} jugó con su {obj} durante mucho tiempo.",
        "{El} dejó {el_obj} un momento para mirar una mariposa.",
        "{El} enseñaba su {obj} a todo el que veía.",
    ),
    "lost.problem": (
        "Al cabo de un rato, {hero} no encontraba su {obj}.",
        "De repente, {hero} vio que su {obj} había desaparecido.",
        "Cuando {el} miró hacia abajo, su {obj} no estaba allí.",
    ),
    "lost.cry": (
        '"Oh, no, ¿dónde está mi {obj}?", gritó {hero}.',
        '"¡No encuentro mi {obj}!", dijo {hero}.',
        '"¡Mi {obj} ha desaparecido!", exclamó {hero}.',
    ),
    "lost.search": (
        "{El} buscó debajo de los bancos y detrás de los árboles.",
        "{El} buscó por todo {el_place}, pero {el_obj} no aparecía por ninguna parte.",
        "{hero} preguntó a todo el que veía, pero nadie había visto nada.",
        "{El} volvió por el mismo camino, mirando el suelo con atención.",
    ),
    "lost.help_friend": (
        '"No te preocupes, te ayudaré a buscar", dijo {friend}.',
        "{friend} vino corriendo a ayudar{lo}.",
        "{friend} dijo que debían buscar en cada rincón.",
    ),
    "lost.help_alone": (
        "{hero} respiró hondo y decidió no rendirse.",
        "{El} pensó mucho en dónde había estado.",
    ),
    "lost.found": (
        "Por fin, {el} encontró su {obj} {found_where}.",
        "Después de buscar mucho, {hero} encontró {el_obj} {found_where}.",
        "Por fin, allí estaba, {found_where}: ¡su {obj}!",
    ),
    "lost.joy": (
        '"¡{Lobj} he encontrado!", gritó {hero}.',
        "{hero} abrazó su {obj} y se rio.",
        "{El} sujetó fuerte {el_obj} y sonrió.",
    ),
    "lost.home": (
        "Luego {hero} volvió a casa con {el_obj} en las manos.",
        "Desde entonces, {el} guardó {el_obj} en un lugar seguro.",
    ),
    "lost.thanks": (
        '"Gracias por ayudarme", le dijo {hero} a {friend}.',
        "{hero} le dio las gracias a {friend} por su ayuda.",
    ),
    # -- event: a lost pet -------------------------------------------------------------------
    "pet.before": (
        "A {pet} le gustaba jugar en el jardín todas las tardes.",
        "{pet} era pequeñ{po}, rápid{po} y muy curios{po}.",
    ),
    "pet.problem": (
        "Aquella tarde, la verja estaba abierta, y {pet} se escapó.",
        "De repente, {pet} persiguió a {a_animal} y desapareció de la vista.",
        "Cuando {hero} llegó a casa, {pet} no estaba en el jardín.",
    ),
    "pet.cry": (
        '"{pet}, ¿dónde estás?", llamó {hero}.',
        '"¡Vuelve, {pet}!", gritó {hero}.',
    ),
    "pet.search": (
        "{El} buscó en el jardín, en la calle y en {el_place}.",
        "{El} llamó a {pet} por su nombre una y otra vez.",
        "{hero} colgó un cartel con una foto de {pet}.",
    ),
    "pet.help_friend": (
        "{friend} trajo una linterna y {lo} ayudó a buscar.",
        '"Encontraremos a {pet} junt{os}", dijo {friend}.',
    ),
    "pet.help_alone": (
        "{hero} no se rindió, ni siquiera cuando se hizo de noche.",
        "{El} escuchó con atención por si oía algún ruidito.",
    ),
    "pet.found": (
        "Por fin, {hero} encontró a {pet} {found_where}.",
        "{pet} estaba escondid{po} {found_where}, san{po} y salv{po}.",
    ),
    "pet.joy": (
        "{pet} saltó a los brazos de {hero}.",
        "{hero} llevó a {pet} a casa y le dio un gran abrazo.",
    ),
    "pet.home": (
        "Aquella noche, {pet} cenó mucho y se quedó dormid{po}.",
        "Después de aquello, {hero} se aseguró de que la verja estuviera siempre cerrada.",
    ),
    # -- event: a storm ----------------------------------------------------------------------
    "storm.start": (
        "De repente, unas nubes oscuras llenaron el cielo.",
        "El viento empezó a soplar, y el cielo se volvió gris.",
        "Entonces el cielo se oscureció, y los truenos retumbaron sobre {el_place}.",
    ),
    "storm.rain": (
        "Caían gotas grandes de lluvia, y el viento aullaba.",
        "Pronto una gran tormenta rugía sobre el pueblo.",
        "Llovía a cántaros, y brillaban los relámpagos.",
    ),
    "storm.shelter": (
        "{hero} corrió a casa tan rápido como pudo.",
        "{hero} y {friend} se refugiaron bajo un tejado hasta que dejó de llover.",
        "{El} esperó dentro y escuchó el viento.",
    ),
    "storm.damage": (
        "Cuando pasó la tormenta, se había roto {storm_damage}.",
        "El viento había derribado {storm_damage}.",
    ),
    "storm.fix_friend": (
        "{hero} y {friend} trabajaron junt{os} para arreglar {storm_damage}.",
        '"Arreglemos {storm_damage} junt{os}", dijo {friend}.',
    ),
    "storm.fix_alone": (
        "{hero} arregló {storm_damage} con un martillo y unos clavos.",
        "{El} trabajó toda la tarde para arreglar {storm_damage}.",
    ),
    "storm.clean": (
        "{El} se llevó los trozos rotos.",
        "{hero} barrió las hojas y las ramas del camino.",
    ),
    "storm.after": (
        "Entonces salió el sol, y apareció un arcoíris sobre {el_place}.",
        "Después de la lluvia, el aire olía a fresco y a limpio.",
        "Llevó mucho tiempo, pero {storm_damage} volvió a estar como el primer día.",
    ),
    # -- event: a birthday (needs the friend) ------------------------------------------------
    "bday.start": (
        "Era el cumpleaños de {friend}.",
        "Mañana era el cumpleaños de {friend}, y {hero} quería hacerle un regalo.",
    ),
    "bday.problem": (
        "Pero {hero} no sabía qué regalar.",
        "{El} no tenía dinero para un regalo.",
        "{El} pensó y pensó, pero no se le ocurría nada.",
    ),
    "bday.idea": (
        "Entonces {el} tuvo una idea: {el} haría {gift}.",
        "{hero} decidió hacer {gift} con sus propias manos.",
    ),
    "bday.make": (
        "{El} trabajó en ello toda la tarde.",
        "Era un trabajo difícil, pero {el} no se rindió.",
        "{El} usó pegamento, papel y mucho cariño.",
    ),
    "bday.party": (
        "En la fiesta había tarta, música y muchos globos.",
        "Todos sus amigos fueron a la fiesta en {el_place}.",
    ),
    "bday.give": (
        "{hero} le regaló a {friend} {gift}.",
        "Cuando {friend} abrió el regalo, {fel} encontró {gift}.",
    ),
    "bday.cake": (
        "Comieron tarta y cantaron canciones hasta que se hizo de noche.",
        "Todos jugaron y bailaron en el jardín.",
    ),
    "bday.thanks": (
        '"¡Es el mejor regalo del mundo!", dijo {friend}.',
        "{friend} abrazó a {hero} y le dio las gracias.",
    ),
    # -- event: a race -----------------------------------------------------------------------
    "race.start": (
        "Había una gran carrera en {el_place}.",
        "Todo el pueblo vino a ver la gran carrera.",
        "{hero} quería correr en la carrera y ganar.",
    ),
    "race.train": (
        "Durante semanas, {el} había entrenado cada tarde.",
        "{El} se ató los zapatos y respiró hondo.",
    ),
    "race.go": (
        '"¡Preparados, listos, ya!", gritó el juez.',
        "Los corredores salieron, y {hero} corrió tan rápido como pudo.",
    ),
    "race.fall_friend": (
        "A mitad de la carrera, {friend} tropezó y se cayó.",
        "{hero} vio que {friend} se había hecho daño en la rodilla.",
    ),
    "race.help_friend": (
        "{hero} dejó de correr y ayudó a {friend} a levantarse.",
        "{hero} podía ganar, pero no quería dejar atrás a {friend}.",
    ),
    "race.end_together": (
        "{hero} y {friend} terminaron la carrera junt{os}, {los} últim{os} pero sonriendo.",
        "Todos aplaudieron cuando {los} dos amig{os} terminaron la carrera junt{os}.",
    ),
    "race.fall_alone": (
        "Cerca del final, {hero} tropezó con una piedra.",
        "Le dolía la rodilla, pero {el} se levantó y siguió corriendo.",
    ),
    "race.crowd": (
        "La gente aplaudía y animaba desde el borde de la pista.",
        "El público gritaba nombres y agitaba banderas.",
    ),
    "race.after": (
        "Después de la carrera, {hero} bebió agua fría y descansó debajo de un árbol.",
        "Más tarde, todos tomaron limonada y hablaron de la carrera.",
    ),
    "race.end_won": (
        "{hero} adelantó a los demás y ganó la carrera.",
        "{hero} ganó la carrera, y todos aplaudieron.",
    ),
    "race.end_second": (
        "{hero} llegó en segundo lugar, justo detrás de un corredor rápido con una camiseta {house_colour}.",
        "{El} llegó en segundo lugar, y estaba orgullos{o} de terminar.",
    ),
    # -- event: building something -----------------------------------------------------------
    "build.start": (
        "{hero} quería construir {a_build}.",
        "{hero} y {friend} decidieron construir {a_build} en {el_place}.",
    ),
    "build.work": (
        "{El} encontró madera, clavos y un martillo.",
        "{hero} trabajó toda la mañana, cargando madera y cuerda.",
        "{hero} usó lo que sabía como {job} para hacer un plan.",
    ),
    "build.problem": (
        "Pero cuando estaba casi terminad{bo}, {el_build} se vino abajo.",
        "Entonces llegó un viento fuerte, y {el_build} se deshizo.",
    ),
    "build.retry_friend": (
        '"Intentémoslo otra vez, pero esta vez lo haremos más fuerte", dijo {friend}.',
        "{friend} {lo} ayudó a empezar otra vez desde el principio.",
    ),
    "build.retry_alone": (
        "{hero} no se rindió y empezó otra vez.",
        "{El} hizo la base más ancha y más fuerte.",
    ),
    "build.done": (
        "Esta vez, {el_build} se mantuvo alt{bo} y firme.",
        "Por fin, terminó {el_build}.",
    ),
    "build.paint": (
        "{hero} pintó {el_build} de {house_colour_m}.",
        "Luego {el} puso una banderita en lo más alto.",
    ),
    "build.enjoy": (
        "{hero} miró {el_build} y sonrió.",
        "Todos vinieron a ver cómo había quedado {el_build}.",
    ),
    # -- event: helping a friend (needs the friend) ------------------------------------------
    "help.start": (
        "Un día, {friend} parecía muy {fbad_feeling}.",
        "{hero} vio que {friend} estaba {fbad_feeling}.",
    ),
    "help.why": (
        "{friend} estaba triste porque su {friend_problem}.",
        "{fEl} explicó que su {friend_problem}.",
    ),
    "help.offer": (
        '"No estés triste, yo puedo ayudarte", dijo {hero}.',
        "{hero} sabía exactamente qué hacer.",
    ),
    "help.work": (
        "{hero} usó lo que sabía como {job} para ayudar.",
        "{Los} dos amig{os} trabajaron junt{os} toda la tarde.",
        "{hero} trajo sus herramientas y se puso manos a la obra.",
    ),
    "help.detail": (
        "Era un trabajo grande, pero a {hero} no le daba miedo trabajar duro.",
        "Necesitaban algunas herramientas, así que {hero} fue a casa a buscarlas.",
    ),
    "help.done": (
        "Al llegar la noche, el problema estaba resuelto.",
        "Pronto todo volvió a estar bien.",
    ),
    "help.thanks": (
        "{friend} le dio las gracias a {hero} una y otra vez.",
        '"Eres {un} amig{o} de verdad", dijo {friend}.',
    ),
    # -- ending ------------------------------------------------------------------------------
    "ending.feeling": (
        "Al final, {hero} se sintió {feeling}.",
        "Aquella noche, {hero} se fue a la cama {feeling} y cansad{o}.",
        "{hero} se sintió {feeling} durante todo el camino a casa.",
        "Había sido un día largo, pero {hero} se sentía {feeling}.",
    ),
    "ending.home": (
        "Más tarde, {hero} cenó algo caliente y le contó el día a su familia.",
        "En casa, {hero} bebió una taza de leche caliente y miró las estrellas.",
    ),
    "ending.moral": (
        "{hero} aprendió que {moral}.",
        "Desde aquel día, {hero} siempre recordó que {moral}.",
    ),
    "ending.close": (
        '"Este ha sido el mejor día de mi vida", dijo {hero}.',
        "Y desde entonces, {hero} y {friend} fueron todavía más amig{os}.",
        "{El} estaba deseando vivir la siguiente aventura.",
    ),
}

# ---------------------------------------------------------------------------------------------
# 2. The Spanish slots of a story, from its English cast


def _form(pair: tuple[str, str], gender: str) -> str:
    """The word of a (masculine, feminine) pair for `gender`."""
    return pair[0] if gender == "male" else pair[1]


def _noun_gender(english: str) -> str:
    return "female" if ES_NOUNS[english][1].startswith("f") else "male"


def _with_article(english: str, definite: bool, capital: bool = False) -> str:
    """ "la pelota", "las colinas", "un barco": the Spanish noun of `english` with its article."""
    noun, gender = ES_NOUNS[english]
    plural = gender.endswith("p")
    if definite:
        article = {("m", False): "el", ("f", False): "la", ("m", True): "los", ("f", True): "las"}[(gender[0], plural)]
    else:
        article = "una" if gender[0] == "f" else "un"
    return f"{article.capitalize() if capital else article} {noun}"


def _to(english: str) -> str:
    """ "al parque", "a la playa", "a las colinas": a + the definite article (a + el = al)."""
    with_article = _with_article(english, definite=True)
    return "al " + with_article[3:] if with_article.startswith("el ") else "a " + with_article


def _of(english: str) -> str:
    """ "del parque", "de la playa" (de + el = del)."""
    with_article = _with_article(english, definite=True)
    return "del " + with_article[3:] if with_article.startswith("el ") else "de " + with_article


def _ending(gender: str) -> str:
    return "o" if gender == "male" else "a"


def _object(english: str) -> tuple[str, str]:
    """ "big red ball" -> ("pelota roja grande", gender): the noun, then its colour, then its size."""
    noun = next(noun for noun in sorted(OBJECTS, key=len, reverse=True) if english.endswith(noun))  # "teddy bear"
    adjectives = english[: -len(noun)].split()
    gender = _noun_gender(noun)
    spanish = [ES_NOUNS[noun][0]] + [_form(ES_ADJECTIVES[a], gender) for a in reversed(adjectives)]
    return " ".join(spanish), gender


def _person(prefix: str, gender: str, job: str, action: str) -> dict[str, str]:
    """Pronouns, endings and job of the hero (prefix "") or the friend (prefix "f")."""
    female = gender == "female"
    job_word = _form(ES_JOBS[job], gender)
    key = "friend_job" if prefix else "job"
    return {
        f"{prefix}El": "Ella" if female else "Él", f"{prefix}el": "ella" if female else "él",
        f"{prefix}lo": "la" if female else "lo", f"{prefix}o": _ending(gender),
        f"{prefix}un": "una" if female else "un",
        f"{prefix}el_art": "la" if female else "el",
        key: job_word, f"a_{key}": f"{'una' if female else 'un'} {job_word}", f"{key}_action": ES_JOB_ACTIONS[action],
    }


def spanish_slots(slots: dict[str, str], friend_gender: str | None) -> dict[str, str]:
    """The Spanish values of every slot of a story, from the English `slots` of its cast (`writer._cast`).

    `friend_gender` is the friend's gender, or None for a story without a friend."""
    gender = slots["gender"]
    out = {"hero": slots["hero"], "pet": slots["pet"]}
    out.update(_person("", gender, slots["job"], slots["job_action"]))
    if friend_gender is not None:
        out["friend"] = slots["friend"]
        out.update(_person("f", friend_gender, slots["friend_job"], slots["friend_job_action"]))
        out["fbad_feeling"] = _form(ES_FEELINGS[slots["bad_feeling"]], friend_gender)
        both_women = gender == friend_gender == "female"
        out.update(os="as" if both_women else "os", los="las" if both_women else "los",
                   Los="Las" if both_women else "Los")
    out.update(
        trait=_form(ES_TRAITS[slots["trait"]], gender),
        feeling=_form(ES_FEELINGS[slots["feeling"]], gender),
        bad_feeling=_form(ES_FEELINGS[slots["bad_feeling"]], gender),
        home_al=_to(slots["home"]), home_del=_of(slots["home"]),
        home_lo=("las" if ES_NOUNS[slots["home"]][1] == "fp" else "lo"),
        house_colour=_form(ES_ADJECTIVES[slots["house_colour"]], "female"),  # una puerta, una camiseta
        house_colour_m=_form(ES_ADJECTIVES[slots["house_colour"]], "male"),  # pintar de rojo
        al_place=_to(slots["place"]), el_place=_with_article(slots["place"], True),
        El_place=_with_article(slots["place"], True, capital=True), del_place=_of(slots["place"]),
        place_desc=_form(ES_PLACE_DESCRIPTIONS[slots["place_desc"]], _noun_gender(slots["place"])),
        found_where=ES_PHRASES[slots["found_where"]], storm_damage=ES_PHRASES[slots["storm_damage"]],
        gift=ES_PHRASES[slots["gift"]], friend_problem=ES_PHRASES[slots["friend_problem"]],
        moral=ES_PHRASES[slots["moral"]],
    )
    day_time = ES_PHRASES[slots["day_time"]]
    out.update(una_day_time=day_time, Una_day_time=day_time[0].upper() + day_time[1:])
    obj, obj_gender = _object(slots["obj"])
    out.update(obj=obj, a_obj=("una " if obj_gender == "female" else "un ") + obj,
               el_obj=("la " if obj_gender == "female" else "el ") + obj, Lobj="La" if obj_gender == "female" else "Lo")
    animal = slots["animal"]
    out.update(a_animal=_with_article(animal, False), Un_animal=_with_article(animal, False, capital=True),
               ao=_ending(_noun_gender(animal)))
    pet_animal = slots["pet_animal"]
    out.update(a_pet=_with_article(pet_animal, False), el_pet=_with_article(pet_animal, True),
               po=_ending(_noun_gender(pet_animal)))
    build = slots["build"]
    out.update(a_build=_with_article(build, False), el_build=_with_article(build, True),
               bo=_ending(_noun_gender(build)))
    return out


def translate(choices: list[list[tuple[str, int]]], slots: dict[str, str], friend_gender: str | None) -> str:
    """The Spanish text of a story: for each paragraph, the Spanish mirror of each chosen (role, template index)."""
    values = spanish_slots(slots, friend_gender)
    return "\n\n".join(" ".join(STORY_TEMPLATES_ES[role][index].format_map(values) for role, index in paragraph)
                       for paragraph in choices)


# ---------------------------------------------------------------------------------------------
# 3. Which sentences translate alone
#
# A sentence out of its story may not say everything its translation needs. English "They had lunch together" does
# not say whether the two friends are both women ("juntas") or not ("juntos"); Spanish "Su pelota" does not say
# whether it is his ball or her ball. A translation is *determined* by its source sentence when every feature that
# the target's words depend on is shown by the source's words (the names are gendered, so a name shows a gender).

_NEEDED_IN_SPANISH = {  # Spanish slot -> what its form depends on
    **{slot: {"hero"} for slot in ("o", "un", "lo", "El", "el", "a_job", "job", "trait", "feeling", "bad_feeling")},
    **{slot: {"friend"} for slot in ("fo", "fun", "flo", "fEl", "fel", "fel_art", "a_friend_job", "friend_job",
                                     "fbad_feeling")},
    **{slot: {"hero", "friend"} for slot in ("os", "los", "Los")},
    "po": {"pet_animal"}, "Lobj": {"object"}, "ao": {"animal"}, "bo": {"build"}, "home_lo": {"home"},
}
_NEEDED_IN_ENGLISH = {**{slot: {"hero"} for slot in ("He", "he", "His", "his", "him")},
                      **{f"f{slot}": {"friend"} for slot in ("He", "he", "His", "his", "him")}}
_SHOWN_BY_ENGLISH = {
    "hero": {"hero", "He", "he", "His", "his", "him"}, "friend": {"friend", "fHe", "fhe", "fHis", "fhis", "fhim"},
    "object": {"obj", "a_obj"}, "animal": {"animal", "a_animal"}, "pet_animal": {"pet_animal", "a_pet"},
    "build": {"build", "a_build"}, "home": {"home"},
}
_SHOWN_BY_SPANISH = {"hero": {"hero", "El", "el", "lo", "o", "un", "a_job"},
                     "friend": {"friend", "fEl", "fel", "flo", "fo", "fun", "fel_art", "a_friend_job"}}


def determined(role: str, index: int, direction: str) -> bool:
    """Whether template `index` of `role` translates alone in `direction` ("en_es" or "es_en"): its source sentence
    shows every feature that its target sentence needs."""
    if direction not in ("en_es", "es_en"):
        raise ValueError(f"direction must be 'en_es' or 'es_en', got {direction!r}")
    english, spanish = template_slots(STORY_TEMPLATES[role][index]), template_slots(STORY_TEMPLATES_ES[role][index])
    source, target = (english, spanish) if direction == "en_es" else (spanish, english)
    needs = (_NEEDED_IN_SPANISH if direction == "en_es" else _NEEDED_IN_ENGLISH)
    shown_by = _SHOWN_BY_ENGLISH if direction == "en_es" else _SHOWN_BY_SPANISH
    needed = set().union(*(needs.get(slot, set()) for slot in target))
    return all(source & shown_by.get(feature, set()) for feature in needed)


# ---------------------------------------------------------------------------------------------
# 4. Reading the Spanish grammar backwards


@cache
def _features() -> SlotFeatures:
    """Every value of every Spanish slot, each with its readings: the features it implies (`grammar.match`).
    A word both genders share ("policía", "amable") has a reading for each."""
    values: dict[str, dict[str, list]] = {}

    def add(slot: str, value: str, **features: str) -> None:
        readings = values.setdefault(slot, {}).setdefault(value, [])
        if features not in readings:
            readings.append(features)

    for gender in GENDERS:
        for name in NAMES[gender]:
            add("hero", name, hero=gender)
            add("friend", name, friend=gender)
        for prefix, group in (("", "hero"), ("f", "friend")):
            for job in JOBS:
                person = _person(prefix, gender, job, JOB_ACTIONS[job][0])
                key = "friend_job" if prefix else "job"
                for slot in (f"{prefix}{form}" for form in ("El", "el", "lo", "o", "un", "el_art")):
                    add(slot, person[slot], **{group: gender})
                add(key, person[key], **{group: gender, f"{group}_job": job})
                add(f"a_{key}", person[f"a_{key}"], **{group: gender, f"{group}_job": job})
                for action in JOB_ACTIONS[job]:
                    add(f"{key}_action", ES_JOB_ACTIONS[action], **{f"{group}_job": job})
        for trait in TRAITS:
            add("trait", _form(ES_TRAITS[trait], gender), hero=gender)
        for feeling in GOOD_FEELINGS:
            add("feeling", _form(ES_FEELINGS[feeling], gender), hero=gender)
        for feeling in BAD_FEELINGS:
            add("bad_feeling", _form(ES_FEELINGS[feeling], gender), hero=gender)
            add("fbad_feeling", _form(ES_FEELINGS[feeling], gender), friend=gender)
    for hero in GENDERS:
        for friend in GENDERS:
            both_women = hero == friend == "female"
            for slot, value in (("os", "as" if both_women else "os"), ("los", "las" if both_women else "los"),
                                ("Los", "Las" if both_women else "Los")):
                add(slot, value, hero=hero, friend=friend)
    for home in HOMES:
        add("home_al", _to(home), home=home)
        add("home_del", _of(home), home=home)
        add("home_lo", "las" if ES_NOUNS[home][1] == "fp" else "lo", home=home)
    for colour in HOUSE_COLOURS:
        add("house_colour", _form(ES_ADJECTIVES[colour], "female"), house_colour=colour)
        add("house_colour_m", _form(ES_ADJECTIVES[colour], "male"), house_colour=colour)
    for place in PLACES:
        place_gender = _noun_gender(place)
        for slot, value in (("al_place", _to(place)), ("el_place", _with_article(place, True)),
                            ("El_place", _with_article(place, True, capital=True)), ("del_place", _of(place))):
            add(slot, value, place=place)
        for description in PLACE_DESCRIPTIONS:
            add("place_desc", _form(ES_PLACE_DESCRIPTIONS[description], place_gender), place=place)
    for day_time in DAY_TIMES:
        phrase = ES_PHRASES[day_time]
        add("una_day_time", phrase, day_time=day_time)
        add("Una_day_time", phrase[0].upper() + phrase[1:], day_time=day_time)
    morals = sorted({moral for morals_of_event in MORALS.values() for moral in morals_of_event})
    for slot, items in (("found_where", FOUND_WHERE), ("storm_damage", STORM_DAMAGE), ("gift", GIFTS),
                        ("friend_problem", FRIEND_PROBLEMS), ("moral", morals)):
        for item in items:
            add(slot, ES_PHRASES[item], **{slot: item})
    for size in (None, *SIZES):
        for colour in COLOURS:
            for noun in OBJECTS:
                english = f"{colour} {noun}" if size is None else f"{size} {colour} {noun}"
                obj, gender = _object(english)
                add("obj", obj, object=english)
                add("a_obj", ("una " if gender == "female" else "un ") + obj, object=english)
                add("el_obj", ("la " if gender == "female" else "el ") + obj, object=english)
                add("Lobj", "La" if gender == "female" else "Lo", object=english)
    for animal in ANIMALS:
        add("a_animal", _with_article(animal, False), animal=animal)
        add("Un_animal", _with_article(animal, False, capital=True), animal=animal)
        add("ao", _ending(_noun_gender(animal)), animal=animal)
    for pet in PETS:
        add("a_pet", _with_article(pet, False), pet_animal=pet)
        add("el_pet", _with_article(pet, True), pet_animal=pet)
        add("po", _ending(_noun_gender(pet)), pet_animal=pet)
    for build in BUILDS:
        add("a_build", _with_article(build, False), build=build)
        add("el_build", _with_article(build, True), build=build)
        add("bo", _ending(_noun_gender(build)), build=build)
    for name in PET_NAMES:
        add("pet", name)
    return {slot: {value: tuple(readings) for value, readings in options.items()} for slot, options in values.items()}


@cache
def _compiled() -> tuple:
    return compile_templates([t for templates in STORY_TEMPLATES_ES.values() for t in templates], _features())


def accepts(sentence: str) -> bool:
    """True iff the Spanish grammar can write exactly this sentence."""
    return any(match(pieces, sentence, _features()) for pieces in _compiled())


assert set(STORY_TEMPLATES_ES) == set(STORY_TEMPLATES) and all(
    len(STORY_TEMPLATES_ES[role]) == len(STORY_TEMPLATES[role]) for role in STORY_TEMPLATES
), "every English role needs its Spanish templates, one for one"
